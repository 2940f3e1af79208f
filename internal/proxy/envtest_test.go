package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"apisnoop.dev/kube-apisnoop/internal/proxy/proxytest"
	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/record"
)

// call sends one request and returns its status and body.
func call(t testing.TB, client *http.Client, method, url, contentType, body string) (int, []byte) {
	t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, reader)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return resp.StatusCode, got
}

// normalized decodes a response with the fields that differ between two
// otherwise equal requests removed: object names, uids, resourceVersions
// and timestamps.
func normalized(t testing.TB, body []byte, name string) any {
	t.Helper()
	body = bytes.ReplaceAll(body, []byte(name), []byte("NAME"))
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	var scrub func(v any)
	scrub = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, field := range []string{"uid", "resourceVersion", "creationTimestamp", "time", "deletionTimestamp"} {
				delete(v, field)
			}
			for _, child := range v {
				scrub(child)
			}
		case []any:
			for _, child := range v {
				scrub(child)
			}
		}
	}
	scrub(doc)
	return doc
}

func TestSameAnswersAsDirect(t *testing.T) {
	f := envtestServer(t)
	events := proxytest.NewEventLog()
	px := startProxy(t, f.proxyConfig(t, Config{Observer: events, KeepBodies: true}))
	ns := f.namespace(t, "same")
	routes := map[string]struct {
		client *http.Client
		base   string
	}{
		"direct": {f.direct, f.upstream},
		"proxy":  {px.client, px.url.String()},
	}
	collection := "/api/v1/namespaces/" + ns + "/configmaps"
	steps := []struct{ method, path, contentType, body string }{
		{http.MethodPost, collection, "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"NAME","labels":{"t":"same"}},"data":{"k":"v"}}`},
		{http.MethodGet, collection + "/NAME", "", ""},
		{http.MethodPatch, collection + "/NAME", "application/merge-patch+json", `{"data":{"k2":"v2"}}`},
		{http.MethodPatch, collection + "/NAME", "application/strategic-merge-patch+json", `{"metadata":{"labels":{"x":"y"}}}`},
		{http.MethodPut, collection + "/NAME", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"NAME","labels":{"t":"same"}},"data":{"k":"replaced"}}`},
		{http.MethodGet, collection + "?labelSelector=t%3Dsame&fieldSelector=metadata.name%3DNAME", "", ""},
		{http.MethodDelete, collection + "/NAME", "", ""},
		{http.MethodGet, collection + "/NAME", "", ""},
		{http.MethodPost, collection, "application/json", `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"Not_Valid!"}}`},
	}
	var lastID uint64
	for _, step := range steps {
		var results []any
		var statuses []int
		for _, route := range []string{"direct", "proxy"} {
			name := "cm-" + route
			path := strings.ReplaceAll(step.path, "NAME", name)
			body := strings.ReplaceAll(step.body, "NAME", name)
			status, got := call(t, routes[route].client, step.method, routes[route].base+path, step.contentType, body)
			statuses = append(statuses, status)
			results = append(results, normalized(t, got, name))
		}
		if statuses[0] != statuses[1] {
			t.Errorf("%s %s: direct %d, proxy %d", step.method, step.path, statuses[0], statuses[1])
		}
		if !reflect.DeepEqual(results[0], results[1]) {
			t.Errorf("%s %s: bodies differ\ndirect: %s\nproxy:  %s", step.method, step.path, mustJSON(t, results[0]), mustJSON(t, results[1]))
		}
		path := strings.ReplaceAll(step.path, "NAME", "cm-proxy")
		path, _, _ = strings.Cut(path, "?")
		ev := events.WaitFor(t, step.method+" "+path, func(ev record.Event) bool {
			return ev.ID > lastID && ev.Stage == record.StageResponseComplete && ev.Method == step.method && ev.Path == path && ev.Status == statuses[1]
		})
		lastID = ev.ID
		if ev.BytesIn != int64(len(strings.ReplaceAll(step.body, "NAME", "cm-proxy"))) {
			t.Errorf("%s %s: event BytesIn %d", step.method, path, ev.BytesIn)
		}
	}

	// The very same object read both ways is byte for byte the same.
	if _, err := f.clientset.CoreV1().ConfigMaps(ns).Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, BinaryData: map[string][]byte{"b": {0, 1, 0xff}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, direct := call(t, f.direct, http.MethodGet, f.upstream+collection+"/shared", "", "")
	_, proxied := call(t, px.client, http.MethodGet, px.url.String()+collection+"/shared", "", "")
	if !bytes.Equal(direct, proxied) {
		t.Errorf("GET differs:\ndirect: %s\nproxy:  %s", direct, proxied)
	}
}

// watchEvent is what this test needs of a JSON watch event.
type watchEvent struct {
	Type   string `json:"type"`
	Object struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	} `json:"object"`
}

func TestWatchStreamsThroughProxy(t *testing.T) {
	f := envtestServer(t)
	events := proxytest.NewEventLog()
	px := startProxy(t, f.proxyConfig(t, Config{Observer: events}))
	ns := f.namespace(t, "watch")
	list, err := f.clientset.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}

	for i, tc := range []struct {
		name, accept string
		client       *http.Client
		read         func(t *testing.T, body *bufio.Reader) string // returns the object name
	}{
		{"json over HTTP/2", "application/json", px.client, readJSONEvent},
		{"json over HTTP/1.1", "application/json", px.h1, readJSONEvent},
		{"protobuf", "application/vnd.kubernetes.protobuf;stream=watch", px.client, readProtobufFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/api/v1/namespaces/" + ns + "/configmaps"
			// A distinct timeout tells this subtest's events apart.
			query := fmt.Sprintf("watch=true&resourceVersion=%s&timeoutSeconds=%d", list.ResourceVersion, 3600+i)
			resp, cancel := openWatch(t, tc.client, px.url.String()+path+"?"+query, tc.accept)
			// The response has started before the object exists: what
			// arrives next can only have been streamed.
			started := events.WaitFor(t, "watch started", func(ev record.Event) bool {
				return ev.Stage == record.StageResponseStarted && ev.RawQuery == query
			})
			if started.Status != http.StatusOK || started.Path != path {
				t.Errorf("started event %+v", started)
			}
			name := fmt.Sprintf("late-%d", i)
			if _, err := f.clientset.CoreV1().ConfigMaps(ns).Create(context.Background(),
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			// The objects of earlier subtests come first, then ours.
			body := bufio.NewReader(resp.Body)
			for j := 0; j <= i; j++ {
				if got, want := tc.read(t, body), fmt.Sprintf("late-%d", j); got != want {
					t.Fatalf("event %d for %q, want %q", j, got, want)
				}
			}
			cancel()
			done := events.WaitFor(t, "watch complete", func(ev record.Event) bool {
				return ev.Stage == record.StageResponseComplete && ev.ID == started.ID
			})
			if done.WatchEvents != int64(i+1) {
				t.Errorf("counted %d watch events, want %d", done.WatchEvents, i+1)
			}
		})
	}
}

func readJSONEvent(t *testing.T, body *bufio.Reader) string {
	t.Helper()
	line, err := proxytest.ReadLineGuarded(body)
	if err != nil {
		t.Fatalf("read watch event: %v", err)
	}
	var ev watchEvent
	if err := json.Unmarshal([]byte(line), &ev); err != nil {
		t.Fatalf("decode watch event %q: %v", line, err)
	}
	if ev.Type != "ADDED" {
		t.Fatalf("event type %s", ev.Type)
	}
	return ev.Object.Metadata.Name
}

// readProtobufFrame reads one length-prefixed frame and returns the name it
// is known to contain (the test's object names are all "late-...").
func readProtobufFrame(t *testing.T, body *bufio.Reader) string {
	t.Helper()
	frame := make(chan []byte, 1)
	go func() {
		var size uint32
		if err := binary.Read(body, binary.BigEndian, &size); err != nil {
			frame <- nil
			return
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(body, data); err != nil {
			frame <- nil
			return
		}
		frame <- data
	}()
	var data []byte
	select {
	case data = <-frame:
	case <-time.After(proxytest.WaitLimit):
		t.Fatal("no protobuf frame arrived")
	}
	if data == nil {
		t.Fatal("protobuf frame cut short")
	}
	i := bytes.LastIndex(data, []byte("late-"))
	if i < 0 {
		t.Fatalf("frame without an object name: %q", data)
	}
	end := i
	for end < len(data) && (data[end] == '-' || data[end] >= 'a' && data[end] <= 'z' || data[end] >= '0' && data[end] <= '9') {
		end++
	}
	return string(data[i:end])
}

func TestInformerSyncsThroughProxy(t *testing.T) {
	f := envtestServer(t)
	events := proxytest.NewEventLog()
	px := startProxy(t, f.proxyConfig(t, Config{Observer: events}))
	ns := f.namespace(t, "informer")

	cfg := restConfigFor(px)
	cfg.UserAgent = "informer-through-proxy"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 16)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	informer := factory.Core().V1().ConfigMaps().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { seen <- "add " + obj.(*corev1.ConfigMap).Name },
		UpdateFunc: func(_, obj any) {
			seen <- "update " + obj.(*corev1.ConfigMap).Name + "=" + obj.(*corev1.ConfigMap).Data["k"]
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			seen <- "delete " + obj.(*corev1.ConfigMap).Name
		},
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer factory.Shutdown() // after stop is closed
	defer close(stop)
	factory.Start(stop)
	for typ, ok := range factory.WaitForCacheSync(stop) {
		if !ok {
			t.Fatalf("cache of %v did not sync", typ)
		}
	}

	ctx := context.Background()
	cms := f.clientset.CoreV1().ConfigMaps(ns)
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("informer saw %q, want %q", got, want)
			}
		case <-time.After(proxytest.WaitLimit):
			t.Fatalf("informer never saw %q", want)
		}
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched"}, Data: map[string]string{"k": "1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("add watched")
	if _, err := cms.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "watched"}, Data: map[string]string{"k": "2"}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("update watched=2")
	if err := cms.Delete(ctx, "watched", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("delete watched")

	watch := events.WaitFor(t, "informer watch", func(ev record.Event) bool {
		return ev.Stage == record.StageResponseStarted && ev.UserAgent == "informer-through-proxy" && ev.Status == http.StatusOK
	})
	if watch.Path != "/api/v1/namespaces/"+ns+"/configmaps" {
		t.Errorf("watch event for %s", watch.Path)
	}
}

func TestLargeListArrivesIntact(t *testing.T) {
	const objects, valueSize = 600, 2048
	f := envtestServer(t)
	events := proxytest.NewEventLog()
	px := startProxy(t, f.proxyConfig(t, Config{Observer: events}))
	ns := f.namespace(t, "large")

	value := strings.Repeat("x", valueSize)
	var wg sync.WaitGroup
	errs := make(chan error, objects)
	sem := make(chan struct{}, 8)
	for i := range objects {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := f.clientset.CoreV1().ConfigMaps(ns).Create(context.Background(),
				&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i)}, Data: map[string]string{"v": value}}, metav1.CreateOptions{})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	path := "/api/v1/namespaces/" + ns + "/configmaps"
	// Both plain and gzip (which the API server applies to large responses
	// when asked): a gzip answer must pass through still compressed.
	for _, encoding := range []string{"", "gzip"} {
		fetch := func(client *http.Client, base string) ([]byte, string) {
			req, _ := http.NewRequest(http.MethodGet, base+path, nil)
			req.Header.Set("Accept", "application/json")
			if encoding != "" {
				req.Header.Set("Accept-Encoding", encoding)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return raw, resp.Header.Get("Content-Encoding")
		}
		directRaw, directEncoding := fetch(f.direct, f.upstream)
		proxyRaw, proxyEncoding := fetch(px.client, px.url.String())
		if directEncoding != proxyEncoding {
			t.Fatalf("Content-Encoding direct %q, proxy %q", directEncoding, proxyEncoding)
		}
		if encoding == "gzip" && proxyEncoding != "gzip" {
			t.Errorf("API server did not compress a %d-byte list; gzip path untested", len(proxyRaw))
		}
		ev := events.WaitFor(t, "list "+encoding, func(ev record.Event) bool {
			return ev.Stage == record.StageResponseComplete && ev.Path == path && ev.BytesOut == int64(len(proxyRaw))
		})
		_ = ev
		directList := decodeList(t, directRaw, directEncoding)
		proxyList := decodeList(t, proxyRaw, proxyEncoding)
		if len(proxyList.Items) != objects {
			t.Fatalf("proxy listed %d objects, want %d", len(proxyList.Items), objects)
		}
		// The list's own resourceVersion moves with any write in the
		// cluster; the items must be identical.
		if !bytes.Equal(mustJSON(t, directList.Items), mustJSON(t, proxyList.Items)) {
			t.Errorf("listed items differ (%s)", encoding)
		}
	}
}

func decodeList(t testing.TB, raw []byte, encoding string) *corev1.ConfigMapList {
	t.Helper()
	if encoding == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if raw, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	var list corev1.ConfigMapList
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatalf("decode list: %v", err)
	}
	return &list
}

// TestClientBearerTokenForwarded runs the proxy with a transport that has
// the cluster CA but no credentials: the API server must authenticate the
// client's own service-account token.
func TestClientBearerTokenForwarded(t *testing.T) {
	f := envtestServer(t)
	ns := f.namespace(t, "token")
	ctx := context.Background()
	if _, err := f.clientset.CoreV1().ServiceAccounts(ns).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "snooper"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token, err := f.clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "snooper", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("request token: %v", err)
	}
	anonymous := &rest.Config{Host: f.admin.Host, TLSClientConfig: rest.TLSClientConfig{CAData: f.admin.CAData}}
	normal, upgrade, err := resttransport.For(anonymous)
	if err != nil {
		t.Fatal(err)
	}
	events := proxytest.NewEventLog()
	px := startProxy(t, Config{Upstream: proxytest.MustURL(t, f.upstream), Transport: normal, UpgradeTransport: upgrade, Observer: events, KeepBodies: true})

	req, _ := http.NewRequest(http.MethodPost, px.url.String()+"/apis/authentication.k8s.io/v1/selfsubjectreviews",
		strings.NewReader(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token.Status.Token)
	resp, err := px.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var review authenticationv1.SelfSubjectReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + ns + ":snooper"; review.Status.UserInfo.Username != want {
		t.Fatalf("API server saw %q, want %q (status %s)", review.Status.UserInfo.Username, want, resp.Status)
	}
	events.WaitFor(t, "for the review", proxytest.CompleteFor(http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews"))
	for _, ev := range events.All() {
		if bytes.Contains(mustJSON(t, ev), []byte(token.Status.Token)) {
			t.Errorf("event carries the token")
		}
	}
}

// openWatch starts a watch and fails the test unless it is answered 200;
// cancel ends it, as the test's end does.
func openWatch(t *testing.T, client *http.Client, url, accept string) (resp *http.Response, cancel context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err = client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: %s", resp.Status)
	}
	return resp, cancel
}
