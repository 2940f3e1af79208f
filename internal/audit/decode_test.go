package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/audit/auditgen"
)

// reference is what encoding/json makes of a line, the decoder's spec.
func reference(line []byte) (Event, error) {
	var ev Event
	err := json.Unmarshal(line, &ev)
	if err == nil {
		err = ev.check()
	}
	return ev, err
}

// sameEvent compares events by value.
func sameEvent(a, b *Event) bool {
	if a.AuditID != b.AuditID || a.Stage != b.Stage || a.Verb != b.Verb || a.RequestURI != b.RequestURI ||
		a.UserAgent != b.UserAgent || a.User != b.User || a.Kind != b.Kind {
		return false
	}
	if (a.ObjectRef == nil) != (b.ObjectRef == nil) || a.ObjectRef != nil && *a.ObjectRef != *b.ObjectRef {
		return false
	}
	if (a.RequestObject == nil) != (b.RequestObject == nil) || !bytes.Equal(a.RequestObject, b.RequestObject) {
		return false
	}
	return (a.ResponseStatus == nil) == (b.ResponseStatus == nil) && (a.ResponseStatus == nil || *a.ResponseStatus == *b.ResponseStatus)
}

// agree checks the decoder against encoding/json on one line, and reports
// whether the decoder's fast path took it.
func agree(t *testing.T, d *decoder, line []byte) (fast bool) {
	t.Helper()
	line = bytes.TrimSpace(line)
	want, wantErr := reference(line)
	var ev Event
	fast = d.fast(line, &ev)
	if fast {
		var raw Event
		if err := json.Unmarshal(line, &raw); err != nil {
			t.Fatalf("fast path took a line encoding/json refuses (%v):\n%q", err, line)
		}
		if !sameEvent(&ev, &raw) {
			t.Fatalf("fast path decoded\n%+v\nencoding/json\n%+v\nfrom %q", ev, raw, line)
		}
	}
	err := d.decode(line, &ev)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("decode error %v, encoding/json's verdict %v, on %q", err, wantErr, line)
	}
	if err == nil && !sameEvent(&ev, &want) {
		t.Fatalf("decoded\n%+v\nencoding/json\n%+v\nfrom %q", ev, want, line)
	}
	return fast
}

// edgeLines are lines the API server does not write, each on an edge of
// encoding/json's behaviour.
var edgeLines = []string{
	``, `null`, `[]`, `{}`, `"x"`, `1`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,"a":1}`, `{"a":1}x`, `{"a":1} {}`,
	listPods, watchStarted, received, panicked,
	// Case-insensitive keys, escaped and non-ASCII keys.
	`{"KIND":"Event","AuditId":"a","STAGE":"ResponseComplete","Verb":"get","RequestUri":"/x"}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","\u0076erb":"list"}`,
	`{"auditID":"a","\u0073tage":"ResponseComplete","verb":"get","requestURI":"/x"}`,
	`{"auditID":"a","ſtage":"ResponseComplete","verb":"get","requestURI":"/x"}`,
	`{"\u212aind":"Policy","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","usér":{"username":"u"}}`,
	// Duplicate members: the last wins, objects merge.
	`{"auditID":"a","auditID":"b","stage":"ResponseComplete","verb":"get","requestURI":"/x"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","objectRef":{"resource":"pods"},"objectRef":{"name":"p"}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","objectRef":{"resource":"pods"},"objectRef":null}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","user":{"username":"a","username":"b"}}`,
	// null and wrong types.
	`{"auditID":"a","stage":"ResponseComplete","verb":null,"requestURI":"/x","user":null,"objectRef":null,"responseStatus":null}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":null}}`,
	`{"auditID":1,"stage":"ResponseComplete","verb":"get","requestURI":"/x"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","user":"u"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","user":[]}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","objectRef":{"name":5}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":"200"}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":200.0}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":2e2}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":-0}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":-404}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":9223372036854775807}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":9223372036854775808}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":0200}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","responseStatus":{"code":200,"status":"Failure","details":{"causes":[{"a":1.5e-3},true,false,null,-0.0,[]]}}}`,
	// Strings: escapes, UTF-8 (valid and not), control bytes.
	`{"auditID":"a\"b","stage":"ResponseComplete","verb":"get","requestURI":"/x\\y\/z\b\f\n\r\t\u00e9\ud83d\ude00"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x\ud800"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x\u12"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x\q"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/é/日本"}`,
	"{\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\xff\xfe\"}",
	"{\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\",\"annotations\":{\"k\":\"\xff\"}}",
	"{\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\x01\"}",
	"{\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\",\"sourceIPs\":[\"1\t2\"]}",
	"{\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\x7f\"}",
	// Whitespace where JSON allows it, and where it does not.
	" { \"auditID\" : \"a\" , \"stage\":\t\"ResponseComplete\",\r\"verb\":\"get\" ,\"requestURI\":\"/x\" , \"user\" : { \"username\" : \"u\" } , \"responseStatus\": {\"code\" : 200 } } ",
	"{\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\"}\v",
	// Literals and numbers in skipped members.
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":tru}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":nul}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":True}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":-}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":1.}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":.1}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":1e}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":1E+5}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":[1,]}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":[1 2]}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":{"b" "c"}}`,
	// Required fields, kinds, stages; an empty verb is an event.
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"","requestURI":"/api/v1/namespaces/d/pods/p/proxy"}`,
	`{"kind":"EventList","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x"}`,
	`{"auditID":"a","stage":"Sideways","verb":"get","requestURI":"/x"}`,
	`{"auditID":"","stage":"ResponseComplete","verb":"get","requestURI":"/x"}`,
	// requestObject: any JSON value kept as written, null included.
	`{"auditID":"a","stage":"ResponseComplete","verb":"create","requestURI":"/x","requestObject":{"kind":"ConfigMap","data":{"k":"v\u00e9"},"a":[1,2.5e3,true,null]}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":[{"op":"add","path":"/a","value":1}]}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":null}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":"s"}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":-1.5}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":{}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject" : { "a" : 1 } ,"user":{"username":"u"}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","RequestObject":{"a":1}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":{"a":1},"requestObject":{"b":2}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":{"a":1,}}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":{"a":"\q"}}`,
	"{\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"patch\",\"requestURI\":\"/x\",\"requestObject\":{\"a\":\"\xff\"}}",
	`{"auditID":"a","stage":"ResponseComplete","verb":"patch","requestURI":"/x","requestObject":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`,
	// Members the API server writes, which the fast path expects in its
	// order, word by word: out of order, absent, of other types, with
	// whitespace, cut short, names that only start like them.
	`{"stage":"ResponseComplete","kind":"Event","auditID":"a","verb":"get","requestURI":"/x","apiVersion":"audit.k8s.io/v1"}`,
	`{"kind":"Event","apiVersion":1,"level":null,"auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","sourceIPs":"1","annotations":null,"stageTimestamp":[]}`,
	`{"kind" :"Event","apiVersion": "v1","level" : "Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get"}`,
	`{"kindx":"Event","auditID":"a","stageX":"x","stage":"ResponseComplete","requestURIs":"/y","requestURI":"/x","verb":"get","userAgentX":"u","levels":1}`,
	`{"kind":"Event","apiVersion"`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","user":{"username":"u","uid":1,"groups":null,"extra":{"a":["b"]},"username":"v"}}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","user":{"uid":"x","username":"u","Username":"w"}}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","objectRef":{"resource":"pods","namespace":"n","name":"p","uid":"u","apiGroup":"","apiVersion":"v1","resourceVersion":"5","subresource":"log"}}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","objectRef":{"name":"p","resource":"pods","RESOURCE":"x"}}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","responseStatus":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"m","reason":"NotFound","details":{"name":"p"},"code":404}}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","responseStatus":{"metadata":{},"code":200,"code":201}}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get","responseStatus":{"code":200},"responseObject":{"kind":"Pod"},"requestObject":{"a":1}}`,
	// Wanted strings read by the walk: bytes beyond ASCII then escapes,
	// at the end of the data, invalid UTF-8, controls.
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/é\n\u00e9x"}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/é"}`,
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/ab\"c"}`,
	"{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/\xc3\"}",
	"{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/aaaaaaaaaaaa\xe9\x1f\"}",
	"{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/aaaaaaaaaaaa\x7f\x01\"}",
	"{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\",\"user\":{\"username\":\"\xff\"}}",
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","annotations":{"k":"say \"hi\" !#$%&'()*+,-./ \\ \u0041"}}`,
	// Skipped strings and keys with bytes beyond ASCII, which the scan of
	// a string may stop at, before a quote, an escape or a control byte
	// in the same word.
	`{"kind":"Event","auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","annotations":{"é":"日本語 \"q\" ü","k":"ü"}}`,
	"{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\",\"annotations\":{\"k\":\"\xa0\xdc\xff\x80\\\\\xa1\xde\"}}",
	"{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\",\"annotations\":{\"k\xdc\xa0\":\"\xa0\xdc\x01\"}}",
	"{\"kind\":\"Event\",\"auditID\":\"a\",\"stage\":\"ResponseComplete\",\"verb\":\"get\",\"requestURI\":\"/x\",\"annotations\":{\"k\":\"\xdc\xa0\"\"}}",
	// Nesting around the depth where the fast path hands over.
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`,
	`{"auditID":"a","stage":"ResponseComplete","verb":"get","requestURI":"/x","a":` + strings.Repeat(`{"b":`, 20000) + "1" + strings.Repeat("}", 20000) + `}`,
}

// testLogs are the audit logs of this repository's tests.
func testLogs(t testing.TB) map[string][]byte {
	t.Helper()
	logs := map[string][]byte{}
	paths, _ := filepath.Glob("testdata/*.log*")
	paths = append(paths, "../../cmd/kubectl-snoop/testdata/audit.log")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(p, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if data, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		logs[p] = data
	}
	var gen bytes.Buffer
	if err := auditgen.Write(&gen, 2000); err != nil {
		t.Fatal(err)
	}
	logs["auditgen"] = gen.Bytes()
	return logs
}

func lines(data []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

// TestDecoderAgreesWithEncodingJSON checks every line of every test log,
// and lines on the edges, against encoding/json: the same verdict and the
// same values. The API server's lines all take the fast path.
func TestDecoderAgreesWithEncodingJSON(t *testing.T) {
	for name, data := range testLogs(t) {
		var d decoder
		slow := 0
		for _, line := range lines(data) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if !agree(t, &d, line) {
				if _, err := reference(bytes.TrimSpace(line)); err == nil {
					slow++
					t.Errorf("%s: encoding/json decoded a valid line the fast path left: %s", name, line)
				}
			}
		}
		if slow > 0 {
			t.Errorf("%s: %d valid lines off the fast path", name, slow)
		}
	}
	var d decoder
	for _, line := range edgeLines {
		agree(t, &d, []byte(line))
	}
}

// FuzzDecoder holds the decoder to encoding/json on any input.
func FuzzDecoder(f *testing.F) {
	for _, line := range edgeLines {
		if len(line) < 1000 {
			f.Add([]byte(line))
		}
	}
	for _, data := range testLogs(f) {
		for i, line := range lines(data) {
			if i < 20 {
				f.Add(line)
			}
		}
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var d decoder
		agree(t, &d, line)
	})
}

// TestSpecial holds the word-at-a-time scan to a byte-by-byte one: every
// byte value at every place of a word, after any other.
func TestSpecial(t *testing.T) {
	isSpecial := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80 }
	scan := func(b []byte, i int) int {
		for i < len(b) && !isSpecial(b[i]) {
			i++
		}
		return i
	}
	b := make([]byte, 20)
	for n := 1; n <= len(b); n++ {
		for p := range n {
			for c := range 256 {
				for _, d := range []byte{0, 1, '!', '"', '#', '\\', ' ', 0x21 ^ 2, 0x5d, 0x80, 0xff} {
					for k := range b {
						b[k] = 'a' + byte(k)
					}
					b[p] = byte(c)
					if p+1 < n {
						b[p+1] = d
					}
					for _, start := range []int{0, p} {
						if got, want := specialOrHigh(b[:n], start), scan(b[:n], start); got != want {
							t.Fatalf("specialOrHigh(%q, %d) = %d, want %d", b[:n], start, got, want)
						}
					}
				}
			}
		}
	}
}

func TestCloneSharesNothing(t *testing.T) {
	line := []byte(listPods)
	var d decoder
	var ev Event
	if err := d.decode(line, &ev); err != nil {
		t.Fatal(err)
	}
	c := ev.clone()
	if !sameEvent(c, &ev) || !reflect.DeepEqual(*c.ObjectRef, *ev.ObjectRef) {
		t.Fatalf("clone %+v of %+v", c, ev)
	}
	for i := range line {
		line[i] = 'x'
	}
	if c.AuditID != "a1" || c.ObjectRef.Resource != "pods" || c.User.Username != "admin" || c.Code() != 200 {
		t.Errorf("clone changed with the line: %+v", c)
	}

	line = []byte(`{"auditID":"a2","stage":"ResponseComplete","verb":"create","requestURI":"/x","requestObject":{"a":1}}`)
	if err := d.decode(line, &ev); err != nil {
		t.Fatal(err)
	}
	if string(ev.RequestObject) != `{"a":1}` {
		t.Fatalf("requestObject %q", ev.RequestObject)
	}
	c = ev.clone()
	for i := range line {
		line[i] = 'x'
	}
	if string(c.RequestObject) != `{"a":1}` {
		t.Errorf("clone's requestObject changed with the line: %q", c.RequestObject)
	}
}
