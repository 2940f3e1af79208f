package audit

import (
	"errors"
	"io"
	"strings"
	"testing"
)

const (
	listPods      = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list","user":{"username":"admin","groups":["system:masters"]},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.33.0","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200}}`
	watchStarted  = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"w1","stage":"ResponseStarted","requestURI":"/api/v1/pods?watch=true","verb":"watch","user":{"username":"system:serviceaccount:shop:robot"},"objectRef":{"resource":"pods","apiVersion":"v1"},"responseStatus":{"code":200}}`
	watchComplete = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"w1","stage":"ResponseComplete","requestURI":"/api/v1/pods?watch=true","verb":"watch","user":{"username":"system:serviceaccount:shop:robot"},"objectRef":{"resource":"pods","apiVersion":"v1"},"responseStatus":{"code":200}}`
	received      = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"RequestReceived","requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list"}`
	panicked      = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"p1","stage":"Panic","requestURI":"/version","verb":"get"}`
)

func readAll(t *testing.T, input string) ([]Event, Stats) {
	t.Helper()
	r := NewReader(strings.NewReader(input))
	var events []Event
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return events, r.Stats()
		}
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, *ev)
	}
}

func TestReaderCountsEachRequestOnce(t *testing.T) {
	input := strings.Join([]string{received, listPods, watchStarted, watchComplete, panicked, ""}, "\n")
	events, stats := readAll(t, input)
	if len(events) != 3 {
		t.Fatalf("got %d events, want 3 (list, watch once, panic)", len(events))
	}
	if events[1].Stage != StageResponseComplete || stats.Requests != 3 || stats.Duplicates != 0 || stats.Incomplete != 0 || stats.Events != 5 {
		t.Errorf("watch counted at %s; stats %+v", events[1].Stage, stats)
	}
	if events[2].Code() != 500 {
		t.Errorf("panic code %d, want 500", events[2].Code())
	}
	if c := Client(&events[1]); c.Namespace != "shop" || c.ServiceAccount != "robot" {
		t.Errorf("service account client = %+v", c)
	}
}

func TestReaderCountsOpenRequestsAtTheEnd(t *testing.T) {
	// The watch is still open when the log ends; the list was only received.
	input := strings.Join([]string{watchStarted, received, watchStarted}, "\n")
	events, stats := readAll(t, input)
	if len(events) != 1 || events[0].Stage != StageResponseStarted {
		t.Fatalf("got %+v, want the watch at ResponseStarted", events)
	}
	if stats.Requests != 1 || stats.Open != 1 || stats.Incomplete != 1 || stats.Duplicates != 1 {
		t.Errorf("stats %+v", stats)
	}
}

func TestReaderSkipsMalformedLines(t *testing.T) {
	long := `{"kind":"Event","auditID":"x","stage":"ResponseComplete","verb":"get","requestURI":"/` + strings.Repeat("a", maxLine) + `"}`
	input := strings.Join([]string{
		"not json",
		`{"kind":"Event"}`,
		`{"kind":"Policy","auditID":"x","stage":"ResponseComplete","verb":"get","requestURI":"/"}`,
		`{"kind":"Event","auditID":"x","stage":"Sideways","verb":"get","requestURI":"/"}`,
		long,
		listPods,
		`{"truncated":`,
	}, "\n")
	var warned []int64
	r := NewReader(strings.NewReader(input))
	r.OnMalformed = func(line int64, err error) { warned = append(warned, line) }
	var n int
	for {
		_, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 || r.Stats().Malformed != 6 {
		t.Errorf("events %d, malformed %d; want 1 and 6", n, r.Stats().Malformed)
	}
	if len(warned) != 6 || warned[4] != 5 {
		t.Errorf("warned about lines %v", warned)
	}
}

func TestMethodFromVerb(t *testing.T) {
	for verb, want := range map[string]string{
		"get": "GET", "list": "GET", "watch": "GET", "create": "POST", "update": "PUT", "patch": "PATCH",
		"delete": "DELETE", "deletecollection": "DELETE", "post": "POST", "put": "PUT", "head": "HEAD", "options": "OPTIONS",
		"trace": "TRACE", "frobnicate": "FROBNICATE", "": "",
	} {
		ev := Event{Verb: verb}
		if got := ev.Method(); got != want {
			t.Errorf("Method for %s = %s, want %s", verb, got, want)
		}
	}
}

func FuzzReader(f *testing.F) {
	for _, seed := range []string{listPods, watchStarted + "\n" + watchComplete, received, panicked, "{", "\n\n", `{"auditID":1}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(strings.NewReader(string(data)))
		for i := 0; i < 10000; i++ {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("Next failed on in-memory input: %v", err)
			}
			_ = ev.Method()
			_ = ev.Code()
			_ = Client(ev)
		}
	})
}
