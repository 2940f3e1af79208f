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
