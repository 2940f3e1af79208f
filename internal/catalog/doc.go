// Package catalog knows every operation (endpoint, in APISnoop's words) of
// each supported Kubernetes release: its operationId, method, path
// template, group/version/resource/subresource, action, stability level
// and conformance eligibility. Catalogs are generated from the
// k8s.io/kubernetes module (api/openapi-spec/swagger.json and
// test/conformance/testdata/*.yaml) by hack/gen-catalog and embedded,
// zstd-compressed, in data/. FromOpenAPIV2, and package openapiv3 for OpenAPI
// v3, apply the same derivation to a live cluster's documents, which also
// cover custom resources and aggregated APIs.
//
// # Body schemas
//
// Each release also carries the request-body schema of every operation that
// takes one (Schemas): every create, update, patch, delete and
// deletecollection, 572 operations in 1.37. A schema is a table of types
// (Type: object, array, map, string, integer, number, boolean,
// int-or-string, quantity or any; properties; string enums; the list-type,
// list-map-keys, patch-strategy and patch-merge-key extensions strategic
// merge and apply patches follow; preserve-unknown-fields) and, per
// operation, the type of its body. A patch operation's body is the type it
// patches. Types refer to each other by index, equal inline types are
// stored once and only types some body reaches are kept: 1,078 types for
// 1.37. swagger.json carries no enum values, so hack/gen-catalog takes them
// from the Go OpenAPI definitions of the same tree (package kubesource); a
// live 1.37.2 API server publishes the same ones. Package openapiv3 reduces
// a live cluster's documents the same way (SchemasFromOpenAPIV2 and
// BuildSchemas share the reduction), so the "cluster" catalog has the
// schemas of custom resources too.
//
// Properties of built-in types also carry their protobuf field number
// (Property.Proto, and ProtoIn for the fields of a Go struct JSON inlines,
// which protobuf keeps as a message of its own), read by package kubesource
// from the generated.proto files of the k8s.io/api, k8s.io/apimachinery,
// k8s.io/apiextensions-apiserver and k8s.io/kube-aggregator modules of the
// same release (v0.N.P for v1.N.P), so that package fields reads protobuf
// bodies without linking those modules. Proto names are matched to JSON
// names exactly, else on letters and digits regardless of case (Webhooks,
// uID, ref for $ref); the generator fails on a field it cannot place.
//
// Schemas are embedded apart from the catalogs, in data/schemas/, and
// decoded only when asked for (Catalog.Schemas, LoadSchemas): Load never
// touches them, so the sidecar, which links this package, holds none in
// memory unless it walks bodies. What they cost, measured on this
// repository's 2-core build machine:
//
//   - Binary size: 21-26 kB compressed per release, 160,495 bytes for the
//     seven, protobuf field numbers included. Before those were added (the
//     figures that follow predate them), go build ./cmd/kubectl-snoop grew
//     by 234,212 bytes (0.30%, from 77,801,223 to 78,035,435): 139,360
//     bytes of embedded data, the rest code (schemas, package fields, field
//     coverage); ./cmd/apisnoop (the manager and apisnoop proxy) grew by
//     229,468 bytes.
//   - Load time: LoadSchemas decodes 1.37's in about 4 ms (2.7 ms for
//     1.31), allocating 1.4 MB and keeping 0.69 MB alive
//     (BenchmarkLoadSchemas); a catalog takes about 3 ms (decoded with
//     json-iterator; 6.4 ms with encoding/json) and keeps 0.86 MB
//     (BenchmarkLoad).
//
// Schemas.FieldCount, FieldPaths and HasFieldPath give the denominator of
// field coverage: the field paths of a body schema, stopping at a named
// type already on the way down; see Schemas for the path syntax.
//
// # Levels
//
// Level comes from the API version in the path, parsed strictly
// (VersionLevel): /api/v1/... is core v1, /apis/<group>/<version>/... is
// that version. /apis/<group>/ (getXxxAPIGroup) takes the most stable
// version the group serves in the release. /api/, /apis/ and non-resource
// URLs carry no version and are stable.
//
// # Watch operations
//
// The document lists watch operations (watchCoreV1NamespacedPod,
// watchCoreV1NamespacedPodList, ...) separately, on legacy /watch/ paths,
// with actions watch and watchlist, and describes them as deprecated. The
// catalog keeps them as listed, with Deprecated and Watch set; they are
// never eligible. A request on a /watch/ path is counted against them; a
// list request with ?watch=true belongs to the list operation, the way the
// API server reports it.
//
// # Comparison with APISnoop
//
// Eligibility follows APISnoop (kubernetes-sigs/apisnoop,
// apps/snoopdb/postgres/initdb: 300_fn_load_open_api.sql,
// 203_view_conformance_eligible_endpoint.sql): an operation is eligible
// when it is stable, not deprecated (description containing "deprecated",
// which is exactly the watch operations) and not in ineligible_endpoints.yaml.
// Stable discovery and non-resource operations are eligible there too.
// APISnoop publishes 664 stable and 563 eligible endpoints for 1.36; the
// 1.36 catalog (from v1.36.3) has 664 stable and 563 eligible operations,
// and 908 non-deprecated ones as APISnoop. The levels of four operations
// differ, because APISnoop takes the level from a substring search of the
// path ("alpha" anywhere, then "beta") plus a fixed list:
//
//   - getServiceAccountIssuerOpenIDConfiguration (/.well-known/openid-configuration/)
//     and getServiceAccountIssuerOpenIDKeyset (/openid/v1/jwks/) are beta in
//     APISnoop by that fixed list, stable here (no API version; GA since
//     1.21). To keep eligible counts equal they are made ineligible here,
//     with reason "counted as beta by APISnoop".
//   - getStoragemigrationAPIGroup (/apis/storagemigration.k8s.io/, the group
//     serves only v1beta1) and getInternalApiserverAPIGroup
//     (/apis/internal.apiserver.k8s.io/, only v1alpha1) are stable in
//     APISnoop, beta and alpha here. Both are listed in
//     ineligible_endpoints.yaml ("part of a group that has no stable
//     endpoints yet, reporting as a stable endpoint in apisnoop"), so
//     neither count changes.
//
// Net: stable 664 in both (+2 −2); beta 159 here against 160, alpha 85
// against 84; eligible 563 in both.
//
// Other releases differ in the same way, plus: getResourceAPIGroup is
// alpha/beta here in 1.31-1.33 (listed ineligible, no effect), and in 1.37
// getLifecycleAPIGroup (/apis/lifecycle.k8s.io/, alpha only) is in
// pending_eligible_endpoints.yaml: APISnoop would see a stable pending
// endpoint, here it is alpha and ineligible. APISnoop applies the master
// branch's ineligible list to every release; each catalog here uses the
// lists of its own release, and keeps pending operations apart (Pending)
// rather than counting them as eligible (no 1.36 operation is pending).
package catalog
