package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// countingTransport passes requests on to a real transport and notes the
// path and query of each.
type countingTransport struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.seen = append(c.seen, req.URL.RequestURI())
	c.mu.Unlock()
	return c.rt.RoundTrip(req)
}

func (c *countingTransport) saw(uri string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.seen, uri)
}

// protocolLog notes the protocol each request arrived with, by request URI.
type protocolLog struct {
	mu    sync.Mutex
	proto map[string]string
}

func (l *protocolLog) note(r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.proto[r.URL.RequestURI()] = r.Proto
}

func (l *protocolLog) of(uri string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proto[uri]
}

// TestWatchRecognisedBehindPathPrefix puts the envtest API server under
// /prefix, as when it is reached through a path (a gateway, the service
// proxy), and the proxy's upstream URL carries that prefix. The transport
// sees the prefixed path, in which the API server's rules find no watch; it
// must still send the watch over the transport that may use HTTP/2 and the
// GET over HTTP/1.1, as the client's own path says, and the recorded events
// carry the client's path and the watch's event count.
func TestWatchRecognisedBehindPathPrefix(t *testing.T) {
	f := envtestServer(t)
	ns := f.namespace(t, "prefix")
	list, err := f.clientset.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The front strips /prefix and forwards to the API server as admin.
	apiURL := proxytest.MustURL(t, f.upstream)
	protocols := &protocolLog{proto: map[string]string{}}
	inner := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(apiURL) },
		Transport: f.normal,
	}
	stripped := http.StripPrefix("/prefix", inner)
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protocols.note(r)
		stripped.ServeHTTP(w, r)
	}))
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)

	base := upstreamTransport(upstreamPool(front))
	h1 := http1Only(base)
	normal := &countingTransport{rt: base}
	upgrade := &countingTransport{rt: h1}
	t.Cleanup(base.CloseIdleConnections)
	t.Cleanup(h1.CloseIdleConnections)
	events := proxytest.NewEventLog()
	px := startProxy(t, Config{
		Upstream:         proxytest.MustURL(t, front.URL+"/prefix"),
		Transport:        normal,
		UpgradeTransport: upgrade,
		Observer:         events,
	})

	collection := "/api/v1/namespaces/" + ns + "/configmaps"
	query := "watch=true&resourceVersion=" + list.ResourceVersion
	resp, cancel := openWatch(t, px.client, px.url.String()+collection+"?"+query, "application/json")
	started := events.WaitFor(t, "watch started", func(ev record.Event) bool {
		return ev.Stage == record.StageResponseStarted && ev.RawQuery == query
	})
	if started.Path != collection {
		t.Errorf("watch recorded with path %q, want the client's %q", started.Path, collection)
	}
	const created = 2
	for i := range created {
		if _, err := f.clientset.CoreV1().ConfigMaps(ns).Create(context.Background(),
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("late-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	body := bufio.NewReader(resp.Body)
	for i := range created {
		if got, want := readJSONEvent(t, body), fmt.Sprintf("late-%d", i); got != want {
			t.Fatalf("event %d for %q, want %q", i, got, want)
		}
	}
	cancel()
	done := events.WaitFor(t, "watch complete", func(ev record.Event) bool {
		return ev.Stage == record.StageResponseComplete && ev.ID == started.ID
	})
	if done.WatchEvents != created {
		t.Errorf("counted %d watch events, want %d", done.WatchEvents, created)
	}

	object := collection + "/late-0"
	status, got := call(t, px.client, http.MethodGet, px.url.String()+object, "", "")
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", object, status, got)
	}
	fetched := events.WaitFor(t, "GET complete", func(ev record.Event) bool {
		return ev.Stage == record.StageResponseComplete && ev.Path == object
	})
	if fetched.Status != http.StatusOK || fetched.WatchEvents != 0 {
		t.Errorf("GET recorded as %+v", fetched)
	}

	upstreamWatch := "/prefix" + collection + "?" + query
	upstreamGet := "/prefix" + object
	if !normal.saw(upstreamWatch) || upgrade.saw(upstreamWatch) {
		t.Errorf("watch not (only) over the normal transport: normal %q, upgrade %q", normal.seen, upgrade.seen)
	}
	if !upgrade.saw(upstreamGet) || normal.saw(upstreamGet) {
		t.Errorf("GET not (only) over the HTTP/1.1 transport: normal %q, upgrade %q", normal.seen, upgrade.seen)
	}
	if got := protocols.of(upstreamWatch); got != "HTTP/2.0" {
		t.Errorf("watch reached the upstream over %q, want HTTP/2.0", got)
	}
	if got := protocols.of(upstreamGet); got != "HTTP/1.1" {
		t.Errorf("GET reached the upstream over %q, want HTTP/1.1", got)
	}
}

// TestTransportParsesRequestsWithoutExchange: a request that did not come
// through the proxy's handler carries no decision in its context, and the
// transport tells a watch by its path as it is.
func TestTransportParsesRequestsWithoutExchange(t *testing.T) {
	f := envtestServer(t)
	ns := f.namespace(t, "noexchange")
	normal := &countingTransport{rt: f.normal}
	upgrade := &countingTransport{rt: f.upgrade}
	transport := &upgradeAwareTransport{normal: normal, upgrade: upgrade}

	collection := "/api/v1/namespaces/" + ns + "/configmaps"
	watch := collection + "?watch=true&timeoutSeconds=1"
	for _, uri := range []string{watch, collection} {
		req, _ := http.NewRequest(http.MethodGet, f.upstream+uri, nil)
		resp, err := transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", uri, resp.Status)
		}
	}
	if !normal.saw(watch) || upgrade.saw(watch) {
		t.Errorf("watch not (only) over the normal transport: normal %q, upgrade %q", normal.seen, upgrade.seen)
	}
	if !upgrade.saw(collection) || normal.saw(collection) {
		t.Errorf("list not (only) over the HTTP/1.1 transport: normal %q, upgrade %q", normal.seen, upgrade.seen)
	}
}
