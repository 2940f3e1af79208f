package catalog

//go:generate go run ../../hack/gen-catalog -out data

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	jsoniter "github.com/json-iterator/go"
	"github.com/klauspost/compress/zstd"

	"apisnoop.dev/kube-apisnoop/internal/zjson"
)

// Level is the stability level of an operation's API version.
type Level string

const (
	Stable Level = "stable"
	Beta   Level = "beta"
	Alpha  Level = "alpha"
)

// Eligibility says whether an operation counts towards conformance coverage.
type Eligibility string

const (
	// Eligible operations are the denominator of conformance coverage.
	Eligible Eligibility = "eligible"
	// Ineligible operations are excluded; Operation.IneligibleReason says why.
	Ineligible Eligibility = "ineligible"
	// Pending operations are listed in pending_eligible_endpoints.yaml:
	// eligible, but allowed to lack a conformance test for now.
	Pending Eligibility = "pending"
)

// Class tells resource operations apart from discovery and non-resource
// endpoints.
type Class string

const (
	// ClassResource operations act on a resource or subresource.
	ClassResource Class = "resource"
	// ClassDiscovery operations are /api/, /apis/, /apis/<group>/,
	// /api/v1/ and /apis/<group>/<version>/.
	ClassDiscovery Class = "discovery"
	// ClassNonResource operations are other URLs: /version/, /openapi/...,
	// /.well-known/..., /openid/..., /logs/.
	ClassNonResource Class = "non-resource"
)

// Operation is one OpenAPI operation (APISnoop calls it an endpoint).
type Operation struct {
	// ID is the operationId, e.g. readCoreV1NamespacedPod.
	ID string `json:"id"`
	// Method is the HTTP method, upper case.
	Method string `json:"method"`
	// Path is the path template, e.g. /api/v1/namespaces/{namespace}/pods/{name}.
	Path string `json:"path"`
	// Group and Version come from the path: "" and v1 for /api/v1/...,
	// <group> and <version> for /apis/<group>/<version>/..., <group> and ""
	// for /apis/<group>/, both empty for /api/, /apis/ and non-resource URLs.
	Group   string `json:"group,omitempty"`
	Version string `json:"version,omitempty"`
	// Resource and Subresource come from the path segments after the
	// group-version, skipping watch/ and namespaces/{namespace}/; empty for
	// discovery and non-resource operations.
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	// Action is x-kubernetes-action (get, list, watch, watchlist, create,
	// update, patch, delete, deletecollection, connect, put, post), or empty.
	Action string `json:"action,omitempty"`
	// Kind is the kind of x-kubernetes-group-version-kind, when present. It
	// may name another group-version than the path (deployments/scale is
	// autoscaling/v1 Scale).
	Kind  string `json:"kind,omitempty"`
	Class Class  `json:"class"`
	Level Level  `json:"level"`
	// Deprecated is what the document says; see isDeprecated.
	Deprecated bool `json:"deprecated,omitempty"`
	// Watch marks the separate watch operations; see isWatch.
	Watch       bool        `json:"watch,omitempty"`
	Namespaced  bool        `json:"namespaced,omitempty"`
	Eligibility Eligibility `json:"eligibility"`
	// IneligibleReason says why an operation is Ineligible.
	IneligibleReason string `json:"ineligibleReason,omitempty"`
	// Category is APISnoop's category: the first tag up to "_" (core, apps).
	Category string `json:"category,omitempty"`
}

// ConformanceTest is one entry of test/conformance/testdata/conformance.yaml.
type ConformanceTest struct {
	// Codename is the Ginkgo name, "[sig-x] ... [Conformance]", which e2e
	// tests append to their user agent.
	Codename string `json:"codename"`
	Testname string `json:"testname"`
	// Release lists the release(s) the test was promoted or changed in, as
	// written in conformance.yaml ("v1.9", "v1.9, v1.18").
	Release string `json:"release,omitempty"`
	File    string `json:"file,omitempty"`
}

// ConformanceLists are the hand-maintained lists of
// test/conformance/testdata in kubernetes/kubernetes.
type ConformanceLists struct {
	// Ineligible maps operationId to the reason from ineligible_endpoints.yaml.
	Ineligible map[string]string `json:"ineligible,omitempty"`
	// Pending are the operationIds of pending_eligible_endpoints.yaml.
	Pending []string `json:"pending,omitempty"`
}

// Catalog is the set of operations of one Kubernetes release.
// Catalogs returned by Load are shared: do not modify them.
type Catalog struct {
	// Release is the minor release, e.g. "1.36".
	Release string `json:"release"`
	// Source names where the catalog was derived from, e.g.
	// "k8s.io/kubernetes@v1.36.3"; empty for live documents.
	Source string `json:"source,omitempty"`
	// Operations are sorted by ID.
	Operations       []Operation       `json:"operations"`
	ConformanceTests []ConformanceTest `json:"conformanceTests,omitempty"`
	Lists            ConformanceLists  `json:"lists"`

	byID       map[string]int
	byCodename map[string]int
	// schemaSource says where Schemas finds the body schemas.
	schemaSource schemaSource
}

// Operation returns the operation with the given operationId.
func (c *Catalog) Operation(id string) (Operation, bool) {
	c.index()
	i, ok := c.byID[id]
	if !ok {
		return Operation{}, false
	}
	return c.Operations[i], true
}

// ConformanceTest returns the conformance test with the given codename.
func (c *Catalog) ConformanceTest(codename string) (ConformanceTest, bool) {
	c.index()
	i, ok := c.byCodename[codename]
	if !ok {
		return ConformanceTest{}, false
	}
	return c.ConformanceTests[i], true
}

// index builds the lookup maps. Catalogs from Load, Decode and the
// FromOpenAPI functions are indexed before they are returned, so they can be
// shared (the live cluster's catalog is read by every reconcile); a Catalog
// built by hand is indexed on first use by its single owner.
func (c *Catalog) index() {
	if c.byID != nil {
		return
	}
	c.byID = make(map[string]int, len(c.Operations))
	for i, op := range c.Operations {
		c.byID[op.ID] = i
	}
	c.byCodename = make(map[string]int, len(c.ConformanceTests))
	for i, test := range c.ConformanceTests {
		c.byCodename[test.Codename] = i
	}
}

// Summary counts the operations of a catalog. Stable, Beta and Alpha count
// operations that are not deprecated, as APISnoop does; deprecated ones (the
// legacy watch operations) are counted once, in Deprecated, so that
// Operations = Stable + Beta + Alpha + Deprecated.
type Summary struct {
	Operations int
	Stable     int
	Beta       int
	Alpha      int
	Deprecated int
	Eligible   int
	Pending    int
	Ineligible int
}

// Summary counts the catalog's operations.
func (c *Catalog) Summary() Summary {
	s := Summary{Operations: len(c.Operations)}
	for _, op := range c.Operations {
		switch {
		case op.Deprecated:
			s.Deprecated++
		case op.Level == Stable:
			s.Stable++
		case op.Level == Beta:
			s.Beta++
		default:
			s.Alpha++
		}
		switch op.Eligibility {
		case Eligible:
			s.Eligible++
		case Pending:
			s.Pending++
		default:
			s.Ineligible++
		}
	}
	return s
}

// apisnoopBeta are operations APISnoop forces to beta ("these endpoints are
// beta, but are not marked as such, yet, in the swagger.json",
// apps/snoopdb/postgres/initdb/300_fn_load_open_api.sql). Their paths carry
// no API version, so their Level here is stable (the feature is GA since
// 1.21); they are made ineligible only to keep eligible counts equal to
// APISnoop's.
var apisnoopBeta = map[string]bool{
	"getServiceAccountIssuerOpenIDConfiguration": true,
	"getServiceAccountIssuerOpenIDKeyset":        true,
}

// ApplyConformanceLists records lists in the catalog and recomputes every
// operation's eligibility. The rules follow APISnoop's
// conformance.eligible_endpoint view: an operation is eligible when it is
// stable, not deprecated and not in the ineligible list. In order:
//
//  1. deprecated (every watch operation is)       -> ineligible
//  2. beta or alpha                               -> ineligible
//  3. in ineligible_endpoints.yaml                -> ineligible, its reason
//  4. in pending_eligible_endpoints.yaml          -> pending
//  5. a watch operation (should the document ever stop calling them
//     deprecated)                                 -> ineligible
//  6. counted as beta by APISnoop (apisnoopBeta)  -> ineligible
//  7. otherwise                                   -> eligible
//
// Discovery and non-resource operations follow the same rules: APISnoop
// counts stable ones (getCoreAPIVersions, getCodeVersion, ...) as eligible.
func (c *Catalog) ApplyConformanceLists(lists ConformanceLists) {
	c.Lists = lists
	pending := make(map[string]bool, len(lists.Pending))
	for _, id := range lists.Pending {
		pending[id] = true
	}
	for i := range c.Operations {
		op := &c.Operations[i]
		op.Eligibility, op.IneligibleReason = Ineligible, ""
		listedReason, listed := lists.Ineligible[op.ID]
		switch {
		case op.Deprecated:
			op.IneligibleReason = "deprecated"
		case op.Level != Stable:
			op.IneligibleReason = string(op.Level) + " API"
		case listed:
			op.IneligibleReason = listedReason
			if op.IneligibleReason == "" {
				op.IneligibleReason = "listed in ineligible_endpoints.yaml"
			}
		case pending[op.ID]:
			op.Eligibility = Pending
		case op.Watch:
			op.IneligibleReason = "watch operation"
		case apisnoopBeta[op.ID]:
			op.IneligibleReason = "counted as beta by APISnoop"
		default:
			op.Eligibility = Eligible
		}
	}
}

// ErrUnsupportedRelease is wrapped by Load for releases without embedded data.
var ErrUnsupportedRelease = errors.New("unsupported release")

//go:embed data
var embedded embed.FS

const dataSuffix = ".json.zst"

// Releases returns the releases with an embedded catalog, oldest first.
func Releases() []string {
	return slices.Clone(embeddedReleases())
}

var embeddedReleases = sync.OnceValue(func() []string {
	entries, err := fs.ReadDir(embedded, "data")
	if err != nil {
		panic(fmt.Sprintf("read embedded data: %v", err)) // cannot happen: data is embedded
	}
	var releases []string
	for _, entry := range entries {
		if release, ok := strings.CutSuffix(entry.Name(), dataSuffix); ok {
			releases = append(releases, release)
		}
	}
	sort.Slice(releases, func(i, j int) bool { return releaseLess(releases[i], releases[j]) })
	return releases
})

// releaseLess orders "1.9" before "1.10".
func releaseLess(a, b string) bool {
	am, an := splitRelease(a)
	bm, bn := splitRelease(b)
	if am != bm {
		return am < bm
	}
	if an != bn {
		return an < bn
	}
	return a < b
}

func splitRelease(release string) (major, minor int) {
	majorText, minorText, _ := strings.Cut(release, ".")
	major, _ = strconv.Atoi(majorText)
	minor, _ = strconv.Atoi(minorText)
	return major, minor
}

// NormalizeRelease reduces "v1.36.3", "1.36.3", "v1.36" and "1.36" (and
// git-describe suffixes such as "v1.36.3-gke.100") to "1.36".
func NormalizeRelease(version string) string {
	version = strings.TrimPrefix(version, "v")
	major, rest, _ := strings.Cut(version, ".")
	minor := rest
	if end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
		minor = rest[:end]
	}
	return major + "." + minor
}

type cacheEntry struct {
	once    sync.Once
	catalog *Catalog
	err     error
}

var cache sync.Map // release -> *cacheEntry

// Load returns the embedded catalog of a release ("1.36"; "v1.36.3" is
// accepted too). It is decoded once per release and shared afterwards.
func Load(release string) (*Catalog, error) {
	release = NormalizeRelease(release)
	if !slices.Contains(embeddedReleases(), release) {
		// Checked before caching so that unknown versions do not fill the cache.
		return nil, fmt.Errorf("load catalog %q (have %s): %w", release, strings.Join(embeddedReleases(), ", "), ErrUnsupportedRelease)
	}
	value, _ := cache.LoadOrStore(release, &cacheEntry{})
	entry := value.(*cacheEntry)
	entry.once.Do(func() {
		entry.catalog, entry.err = loadUncached(release)
		if entry.err == nil {
			entry.catalog.schemaSource.embedded = true
		}
	})
	return entry.catalog, entry.err
}

// catalogCodec is the embedded catalogs' encoding; a catalog decodes to a
// few MB, 64 MiB bounds one read from a ConfigMap.
var catalogCodec = &zjson.Codec{Name: "catalog", Level: zstd.SpeedBestCompression, MaxDecoded: 64 << 20}

func loadUncached(release string) (*Catalog, error) {
	compressed, err := embedded.ReadFile(path.Join("data", release+dataSuffix))
	if err != nil {
		return nil, fmt.Errorf("read catalog %s: %w", release, err)
	}
	return decodeEmbedded(compressed)
}

// decodeEmbedded is Decode for the embedded catalogs, which every
// kubectl snoop coverage decodes before it reads a line: json-iterator
// (linked already, by the Kubernetes libraries) decodes the 0.5 MB of
// JSON in about 40% of encoding/json's time, to the same Catalog
// (TestEmbeddedDecodeIsDecode). The embedded data is Encode's output, so
// the two decoders' differences on unusual input do not arise; catalogs
// from elsewhere (a ConfigMap) go through Decode.
//
// A process loads a release's catalog once (Load caches it), so the zstd
// decoder and json-iterator's decoders are made for the call and left to
// the collector: kept, they were about 3 MiB of live heap in every
// recording sidecar.
func decodeEmbedded(compressed []byte) (*Catalog, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(catalogCodec.MaxDecoded))
	if err != nil {
		return nil, fmt.Errorf("create zstd codec: %w", err)
	}
	raw, err := dec.DecodeAll(compressed, nil)
	dec.Close()
	if err != nil {
		return nil, fmt.Errorf("decompress catalog: %w", err)
	}
	// ConfigCompatibleWithStandardLibrary's settings, in a config of its own
	// whose cache of per-type decoders goes with it.
	jsonAPI := jsoniter.Config{EscapeHTML: true, SortMapKeys: true, ValidateJsonRawMessage: true}.Froze()
	var c Catalog
	if err := jsonAPI.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("decode catalog: %w", err)
	}
	// json-iterator leaves spare capacity in slices where encoding/json
	// does not; a catalog stays in memory as long as the process (the
	// recording sidecar's too), so it keeps only what it holds.
	c.Operations = exact(c.Operations)
	c.ConformanceTests = exact(c.ConformanceTests)
	c.Lists.Pending = exact(c.Lists.Pending)
	c.index()
	return &c, nil
}

// exact returns s, copied to a slice of its own length when it has spare
// capacity.
func exact[T any](s []T) []T {
	if cap(s) == len(s) {
		return s
	}
	return append(make([]T, 0, len(s)), s...)
}

// Encode serialises a catalog the way it is embedded: JSON, zstd
// compressed. The output depends only on the catalog (and the zstd library
// version), so regenerating unchanged input gives identical bytes.
func Encode(c *Catalog) ([]byte, error) { return catalogCodec.Encode(c) }

// Decode reverses Encode.
func Decode(compressed []byte) (*Catalog, error) {
	var c Catalog
	if err := catalogCodec.Decode(compressed, &c); err != nil {
		return nil, err
	}
	c.index()
	return &c, nil
}
