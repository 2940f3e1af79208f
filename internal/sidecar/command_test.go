package sidecar

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
)

// warnings collects what loadCatalog warns about.
type warnings []string

func (w *warnings) printf(format string, args ...any) { *w = append(*w, fmt.Sprintf(format, args...)) }

// writeCatalog writes a one-operation catalog as the operator hands it over.
func writeCatalog(t *testing.T) string {
	t.Helper()
	data, err := catalog.Encode(&catalog.Catalog{Release: "cluster v1.37.2", Operations: []catalog.Operation{{
		ID: "listExampleComV1NamespacedWidget", Method: "GET", Path: "/apis/example.com/v1/namespaces/{namespace}/widgets",
		Group: "example.com", Version: "v1", Resource: "widgets", Action: "list", Class: catalog.ClassResource,
		Level: catalog.Stable, Namespaced: true, Eligibility: catalog.Eligible,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "catalog.json.zst")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// widgetSchemas are the body schemas of a custom resource's create, as the
// operator builds them from the cluster's /openapi/v3 and writes them beside
// the catalog.
func widgetSchemas(t *testing.T) []byte {
	t.Helper()
	var widget catalog.RawSchema
	if err := json.Unmarshal([]byte(`{"type": "object", "properties": {
		"apiVersion": {"type": "string"}, "kind": {"type": "string"},
		"metadata": {"type": "object", "properties": {"name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
		"spec": {"type": "object", "properties": {
			"size": {"type": "integer"},
			"color": {"type": "string", "enum": ["red", "blue"]},
			"parts": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}}}}}}`), &widget); err != nil {
		t.Fatal(err)
	}
	s, err := catalog.BuildSchemas("1.37", "", map[string]*catalog.RawSchema{"com.example.v1.Widget": &widget},
		map[string]*catalog.RawSchema{createWidget: {Ref: "com.example.v1.Widget"}})
	if err != nil {
		t.Fatal(err)
	}
	data, err := catalog.EncodeSchemas(s)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

const createWidget = "createExampleComV1NamespacedWidget"

// createCatalog encodes, as the operator does, a live cluster's catalog
// whose one operation, id, creates example.com/v1 objects of resource.
func createCatalog(t *testing.T, id, resource string) []byte {
	t.Helper()
	data, err := catalog.Encode(&catalog.Catalog{Release: "cluster v1.37.2", Operations: []catalog.Operation{{
		ID: id, Method: "POST", Path: "/apis/example.com/v1/namespaces/{namespace}/" + resource,
		Group: "example.com", Version: "v1", Resource: resource, Action: "create", Class: catalog.ClassResource,
		Level: catalog.Stable, Namespaced: true, Eligibility: catalog.Eligible,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// writeClusterCatalog writes a catalog with a custom resource's create as
// the operator hands it over, and returns it with where its schemas go
// (not written).
func writeClusterCatalog(t *testing.T) (catalogFile, schemasFile string) {
	t.Helper()
	data := createCatalog(t, createWidget, "widgets")
	dir := t.TempDir()
	catalogFile, schemasFile = filepath.Join(dir, "catalog.json.zst"), filepath.Join(dir, "schemas.json.zst")
	if err := os.WriteFile(catalogFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return catalogFile, schemasFile
}

// TestLoadCatalogSchemasLazily: the schemas file is read when Schemas is
// first called, not when the catalog is loaded; a missing or broken one
// leaves the catalog without schemas and is warned about once.
func TestLoadCatalogSchemasLazily(t *testing.T) {
	catalogFile, schemasFile := writeClusterCatalog(t)
	var warned warnings
	c := loadCatalog(catalogFile, schemasFile, "cluster", warned.printf)
	if len(warned) != 0 || len(c.Operations) != 1 {
		t.Fatalf("loading the catalog without its schemas file: %d operations, warnings %q", len(c.Operations), warned)
	}
	// Written after the catalog was loaded: found, so read only now.
	if err := os.WriteFile(schemasFile, widgetSchemas(t), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := c.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"spec.size", "spec.color", "spec.parts[].count"} {
		if !s.HasFieldPath(createWidget, path) {
			t.Errorf("the loaded schemas lack %s", path)
		}
	}
	if err := os.Remove(schemasFile); err != nil {
		t.Fatal(err)
	}
	if again, err := c.Schemas(); again != s || err != nil {
		t.Errorf("Schemas read again: %p, %v", again, err)
	}

	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.WriteFile(broken, []byte("not zstd"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{schemasFile, broken} {
		warned = nil
		c := loadCatalog(catalogFile, file, "cluster", warned.printf)
		for range 3 {
			if _, err := c.Schemas(); !errors.Is(err, catalog.ErrNoSchemas) {
				t.Errorf("schemas file %s: %v, want ErrNoSchemas", file, err)
			}
		}
		if len(warned) != 1 || !strings.Contains(warned[0], "request bodies are not measured for field coverage") {
			t.Errorf("schemas file %s: warnings %q, want one", file, warned)
		}
	}

	// An embedded release has its own schemas: the file is not read.
	warned = nil
	embedded := loadCatalog("", broken, "1.37", warned.printf)
	if _, err := embedded.Schemas(); err != nil || len(warned) != 0 {
		t.Errorf("an embedded release with a schemas file: %v, warnings %q", err, warned)
	}
}

func TestLoadCatalog(t *testing.T) {
	good := writeCatalog(t)
	broken := filepath.Join(t.TempDir(), "broken")
	if err := os.WriteFile(broken, []byte("not zstd"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		file, release string
		wantRelease   string
		wantEmpty     bool
		wantWarnings  []string // substrings, one per warning
	}{
		{name: "an embedded release", release: "1.36", wantRelease: "1.36"},
		{name: "the operator's file over the release", file: good, release: "cluster", wantRelease: "cluster v1.37.2"},
		{name: "a release this binary does not embed", release: "1.99", wantRelease: "1.99", wantEmpty: true,
			wantWarnings: []string{"does not embed Kubernetes 1.99 (it has 1.31,"}},
		{name: "cluster without its file", release: "cluster", wantRelease: "cluster", wantEmpty: true,
			wantWarnings: []string{"does not embed Kubernetes cluster"}},
		{name: "a missing file", file: filepath.Join(t.TempDir(), "absent"), release: "1.37", wantRelease: "1.37",
			wantWarnings: []string{"cannot use --catalog-file, matching against --release 1.37 instead: read catalog file"}},
		{name: "a broken file and an unknown release", file: broken, release: "1.99", wantRelease: "1.99", wantEmpty: true,
			wantWarnings: []string{"decode catalog file", "does not embed Kubernetes 1.99"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var warned warnings
			c := loadCatalog(tc.file, "", tc.release, warned.printf)
			if c.Release != tc.wantRelease || (len(c.Operations) == 0) != tc.wantEmpty {
				t.Errorf("catalog %q with %d operations, want %q (empty: %v)", c.Release, len(c.Operations), tc.wantRelease, tc.wantEmpty)
			}
			if len(warned) != len(tc.wantWarnings) {
				t.Fatalf("warnings %q, want %d", warned, len(tc.wantWarnings))
			}
			for i, want := range tc.wantWarnings {
				if !strings.Contains(warned[i], want) {
					t.Errorf("warning %q does not say %q", warned[i], want)
				}
			}
		})
	}
}

func TestCheckLoopback(t *testing.T) {
	for addr, want := range map[string]error{
		"127.0.0.1:15021": nil,
		"127.0.0.2:15021": nil,
		"[::1]:15021":     nil,
		":15021":          errNotLoopback,
		"0.0.0.0:15021":   errNotLoopback,
		"[::]:15021":      errNotLoopback,
		"10.0.0.7:15021":  errNotLoopback,
		"localhost:15021": errNotLoopback, // a name could resolve anywhere
	} {
		if err := checkLoopback(addr); !errors.Is(err, want) {
			t.Errorf("checkLoopback(%q) = %v, want %v", addr, err, want)
		}
	}
	if err := checkLoopback("15021"); err == nil {
		t.Error("checkLoopback accepts an address without a host")
	}
}

func TestRefusesResultsOnThePodNetwork(t *testing.T) {
	keepRuntime(t)
	cmd := NewCommand("snoop-proxy", nil)
	cmd.SetArgs([]string{"--upstream", "https://127.0.0.1:1", "--results-listen", ":15021"})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); !errors.Is(err, errNotLoopback) {
		t.Errorf("--results-listen :15021: %v, want errNotLoopback", err)
	}
}

// TestUnknownReleaseStillProxies runs the command with a release it does not
// embed: requests pass, are recorded as unknown, and /results is on the
// results listener only.
func TestUnknownReleaseStillProxies(t *testing.T) {
	keepRuntime(t)
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"kind": "PodList"}`)
	}))
	defer upstream.Close()

	p := startProxyCommand(t, upstream, "--release", "1.99", "--pod-name", "app-0", "--service-account", "robot")
	listen, admin, results, proxied := p.listen, p.admin, p.results, p.client

	get := func(client *http.Client, url string) (int, string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(proxied, "https://"+listen+"/api/v1/namespaces/default/pods"); code != http.StatusOK || !strings.Contains(body, "PodList") {
		t.Fatalf("through the proxy: %d %s", code, body)
	}

	if code, _ := get(http.DefaultClient, "http://"+admin+"/results"); code != http.StatusNotFound {
		t.Errorf("the admin listener serves /results: %d", code)
	}
	code, body := get(http.DefaultClient, "http://"+results+"/results")
	if code != http.StatusOK {
		t.Fatalf("GET /results: %d %s", code, body)
	}
	var rep coverage.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Release != "1.99" || rep.Summary.Requests != 1 || rep.Summary.UnknownRequests != 1 {
		t.Errorf("summary %+v, want release 1.99 with 1 request, unknown", rep.Summary)
	}
}

// keepRuntime keeps the command from tuning the test process's runtime
// (tuneRuntime leaves set variables alone).
func keepRuntime(t *testing.T) {
	t.Setenv("GOMAXPROCS", strconv.Itoa(runtime.GOMAXPROCS(0)))
	t.Setenv("GOMEMLIMIT", "off")
}

// waitFor polls url until it answers 200.
func waitFor(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// selfSigned returns a serving pair for 127.0.0.1, as PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// TestClusterCatalogFieldCoverage runs the command as the webhook injects it
// for a session against the live cluster, keeping bodies: the schemas file,
// which does not exist when the proxy starts and serves its first request,
// is read with the first body, and a custom resource's create reports the
// paths it set under the CRD's spec.
func TestClusterCatalogFieldCoverage(t *testing.T) {
	keepRuntime(t)
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = io.WriteString(w, `{"kind": "Widget"}`)
	}))
	defer upstream.Close()

	catalogFile, schemasFile := writeClusterCatalog(t)
	p := startProxyCommand(t, upstream, "--release", "cluster", "--catalog-file", catalogFile, "--schemas-file", schemasFile, "--keep-bodies")
	listen, results, proxied := p.listen, p.results, p.client
	send := func(method, body string) {
		t.Helper()
		req, err := http.NewRequest(method, "https://"+listen+"/apis/example.com/v1/namespaces/default/widgets", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := proxied.Do(req)
		if err != nil {
			t.Fatalf("%s through the proxy: %v", method, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	send(http.MethodGet, "") // no body: the schemas are not asked for
	if err := os.WriteFile(schemasFile, widgetSchemas(t), 0o600); err != nil {
		t.Fatal(err)
	}
	send(http.MethodPost, `{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
		"spec": {"size": 3, "color": "red", "parts": [{"name": "bolt", "count": 4}], "shape": "round"}}`)

	rep := readResults(t, results)
	if rep.Summary.Fields == nil || !rep.Summary.Fields.Schemas || rep.Summary.Fields.Bodies != 1 {
		t.Fatalf("field summary %+v, want one body measured against schemas", rep.Summary.Fields)
	}
	var fr *coverage.FieldReport
	for _, op := range rep.Operations {
		if op.ID == createWidget {
			fr = op.Fields
		}
	}
	if fr == nil {
		t.Fatalf("no field coverage of %s in %+v", createWidget, rep.Operations)
	}
	var set, unknown []string
	for _, h := range fr.Set {
		if !h.NotInSchema {
			set = append(set, h.Path)
		}
	}
	for _, h := range fr.Unknown {
		unknown = append(unknown, h.Path)
	}
	for _, want := range []string{"spec.size", "spec.color", "spec.parts[].name", "spec.parts[].count", "metadata.name"} {
		if !slices.Contains(set, want) {
			t.Errorf("set paths %q lack %s", set, want)
		}
	}
	if !slices.Contains(unknown, "spec.shape") {
		t.Errorf("unknown paths %q lack spec.shape, which the CRD's schema does not declare", unknown)
	}
	// In the schema: apiVersion, kind, metadata, metadata.name,
	// metadata.labels, metadata.labels{}, spec, spec.size, spec.color,
	// spec.parts, spec.parts[], spec.parts[].name, spec.parts[].count; all
	// but the labels' two hit.
	if fr.InSchema != 13 || fr.Hit != 11 {
		t.Errorf("%d of %d paths hit, want 11 of 13", fr.Hit, fr.InSchema)
	}
}

// upstreamAndServingFiles writes the upstream's CA and a fresh loopback
// serving pair, and returns the flags naming them (with --upstream) and the
// serving certificate.
func upstreamAndServingFiles(t *testing.T, upstream *httptest.Server) (flags []string, certPEM []byte) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	certPEM, keyPEM := selfSigned(t)
	return []string{
		"--upstream", upstream.URL,
		"--upstream-ca-file", write("upstream.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: upstream.Certificate().Raw})),
		"--cert-file", write("tls.crt", certPEM), "--key-file", write("tls.key", keyPEM),
	}, certPEM
}

// runningProxy is the proxy command serving in a test: its listeners and a
// client trusting its serving certificate.
type runningProxy struct {
	listen, admin, results string
	client                 *http.Client
}

// startProxyCommand runs the proxy command in front of upstream with a
// fresh serving pair, on free loopback ports, with args added, until the
// test ends, and waits until it is ready.
func startProxyCommand(t *testing.T, upstream *httptest.Server, args ...string) runningProxy {
	t.Helper()
	p := runningProxy{listen: freeAddr(t), admin: freeAddr(t), results: freeAddr(t)}
	files, certPEM := upstreamAndServingFiles(t, upstream)
	cmd := NewCommand("snoop-proxy", nil)
	cmd.SetArgs(append(append([]string{
		"--listen", p.listen, "--admin-listen", p.admin, "--results-listen", p.results,
	}, files...), args...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	})
	waitFor(t, "http://"+p.admin+"/readyz")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	p.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	return p
}

// TestFollowsTheUpstreamCA replaces the API server's CA in the file the
// sidecar was started with, as the kubelet rewrites a service account's
// ca.crt when the cluster CA is rotated: requests that failed against the
// old CA pass without a restart, and a CA that signed nothing of the
// server's still fails.
func TestFollowsTheUpstreamCA(t *testing.T) {
	keepRuntime(t)
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"kind": "PodList"}`)
	}))
	defer upstream.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	other, _ := selfSigned(t)
	if err := os.WriteFile(caFile, other, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxyCommand(t, upstream, "--upstream-ca-file", caFile)
	get := func() int {
		t.Helper()
		resp, err := p.client.Get("https://" + p.listen + "/api/v1/pods")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if code := get(); code != http.StatusBadGateway {
		t.Fatalf("with a CA that did not sign the API server's certificate: %d, want 502", code)
	}
	rotated := append(other, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: upstream.Certificate().Raw})...)
	if err := os.WriteFile(caFile, rotated, 0o600); err != nil {
		t.Fatal(err)
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("after the CA file gained the API server's CA: %d, want 200", code)
	}
}

// TestFollowsTheCatalogFile replaces the catalog file under a running
// sidecar, as the kubelet updates the operator's catalog ConfigMap when a
// custom resource is added to the cluster: requests to the new resource are
// unknown before and matched after, without a restart, and a file that does
// not decode leaves the catalog in use.
func TestFollowsTheCatalogFile(t *testing.T) {
	keepRuntime(t)
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"kind": "Gadget"}`)
	}))
	defer upstream.Close()
	catalogFile, _ := writeClusterCatalog(t)
	p := startProxyCommand(t, upstream, "--release", "cluster", "--catalog-file", catalogFile, "--catalog-check-interval", "20ms")

	create := func(resource string) {
		t.Helper()
		resp, err := p.client.Post("https://"+p.listen+"/apis/example.com/v1/namespaces/default/"+resource, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	createGadget := func() { t.Helper(); create("gadgets") }
	report := func() coverage.Report { return readResults(t, p.results) }
	// replace swaps the file whole, as the kubelet does.
	replace := func(data []byte) {
		t.Helper()
		next := catalogFile + ".next"
		if err := os.WriteFile(next, data, 0o600); err != nil {
			t.Fatal(err)
		}
		future := time.Now().Add(time.Minute) // another modification time, whatever the clock's grain
		if err := os.Chtimes(next, future, future); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(next, catalogFile); err != nil {
			t.Fatal(err)
		}
	}

	createGadget()
	if rep := report(); rep.Summary.Requests != 1 || rep.Summary.UnknownRequests != 1 {
		t.Fatalf("before the catalog knows gadgets: %+v, want 1 request, unknown", rep.Summary)
	}

	replace([]byte("not a catalog"))
	time.Sleep(200 * time.Millisecond) // ten looks at the file
	createGadget()
	create("widgets") // known to the catalog in use, unknown to an empty one
	if rep := report(); rep.Summary.Requests != 3 || rep.Summary.UnknownRequests != 2 {
		t.Fatalf("after a catalog file that does not decode: %+v, want 3 requests, the gadgets unknown and the widget a hit (the catalog in use stays)", rep.Summary)
	}

	const createGadgetID = "createExampleComV1NamespacedGadget"
	replace(createCatalog(t, createGadgetID, "gadgets"))
	hitsOf := func(rep coverage.Report) int64 {
		for _, op := range rep.Operations {
			if op.ID == createGadgetID {
				return op.Hits
			}
		}
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		createGadget()
		if rep := report(); hitsOf(rep) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new catalog was never used: %+v", report().Summary)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// From the switch on, every request is matched; none before was.
	before := report()
	createGadget()
	after := report()
	if after.Summary.UnknownRequests != before.Summary.UnknownRequests || hitsOf(after) != hitsOf(before)+1 {
		t.Errorf("after the switch: %d unknown, %d hits; want %d unknown, %d hits",
			after.Summary.UnknownRequests, hitsOf(after), before.Summary.UnknownRequests, hitsOf(before)+1)
	}
	if before.Summary.UnknownRequests < 2 || hitsOf(before)+before.Summary.UnknownRequests+1 != before.Summary.Requests {
		t.Errorf("%+v, %d hits: want every request but the widget either unknown (the 2 before the new catalog at least) or a gadget hit", before.Summary, hitsOf(before))
	}
}

// readResults reads the report the proxy serves on its results listener.
func readResults(t *testing.T, results string) coverage.Report {
	t.Helper()
	resp, err := http.Get("http://" + results + "/results")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep coverage.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestTakenPortLeavesNothingRunning: when one of the listeners cannot be
// opened, the command fails saying which, and the ports it had opened are
// free again.
func TestTakenPortLeavesNothingRunning(t *testing.T) {
	keepRuntime(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	upstream := httptest.NewTLSServer(http.NotFoundHandler())
	defer upstream.Close()
	files, _ := upstreamAndServingFiles(t, upstream)
	listen, admin := freeAddr(t), freeAddr(t)
	cmd := NewCommand("snoop-proxy", nil)
	cmd.SetArgs(append([]string{"--listen", listen, "--admin-listen", admin, "--results-listen", taken.Addr().String()}, files...))
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.ExecuteContext(context.Background())
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("with --results-listen taken: %v, want an error naming it", err)
	}
	for _, addr := range []string{listen, admin} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s is still held after the command failed: %v", addr, err)
			continue
		}
		ln.Close()
	}
}
