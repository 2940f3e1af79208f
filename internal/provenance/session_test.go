package provenance_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"reflect"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/catalog"
	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/intake"
	"apisnoop.dev/kube-apisnoop/internal/match"
	"apisnoop.dev/kube-apisnoop/internal/provenance"
	"apisnoop.dev/kube-apisnoop/internal/proxy"
	"apisnoop.dev/kube-apisnoop/internal/proxy/resttransport"
	"apisnoop.dev/kube-apisnoop/internal/record"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// sessionNS is where the script runs through a recording proxy.
const sessionNS = "prov-session"

// recordingKubectl serves a recording proxy that keeps bodies and writes,
// as a session's sidecar with requestBodies does, in front of cp, and
// returns kubectl pointed at it with the recorder. The proxy adds the
// admin's credentials on the way up; kubectl sends none.
func recordingKubectl(t *testing.T, cp *testenv.ControlPlane, bin string) (kubectl, *record.Recorder) {
	t.Helper()
	cat, err := catalog.Load("1.37")
	if err != nil {
		t.Fatal(err)
	}
	rec := record.NewRecorder(match.New(cat), nil).KeepWrites()
	upstream, err := url.Parse(cp.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	normal, upgrade, err := resttransport.For(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Config{Upstream: upstream, Transport: normal, UpgradeTransport: upgrade, Observer: rec, KeepBodies: true, MaxBodyBytes: 1 << 20,
		ErrorLog: log.New(tWriter{t}, "proxy: ", 0)})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- proxy.Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Authorization")
			p.ServeHTTP(w, r)
		}), cert)
	}()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["proxy"] = &clientcmdapi.Cluster{Server: "https://" + ln.Addr().String(), CertificateAuthorityData: certPEM}
	// A token kubectl sends (with none it asks for a password), which the
	// proxy drops.
	cfg.AuthInfos["none"] = &clientcmdapi.AuthInfo{Token: "placeholder"}
	cfg.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "none"}
	cfg.CurrentContext = "proxy"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return kubectl{t: t, bin: bin, config: path}, rec
}

// tWriter logs what the proxy says about upstream errors to the test.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// sessionWrites sends the recorder's writes the way a sidecar ships them
// (an intake batch, checked as the collector checks it) and returns what
// the collector keeps.
func sessionWrites(t *testing.T, rec *record.Recorder) []coverage.Write {
	t.Helper()
	batch := intake.Batch{Source: "pod-uid", Seq: 1, Release: "1.37", Delta: rec.Total()}
	req, err := intake.NewRequest(context.Background(), "http://collector"+intake.Path, batch, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := intake.ReadRequest(req, 0)
	if err != nil {
		t.Fatal(err)
	}
	got.Delta.PrefixWriteIDs(got.Source + "/")
	return got.Delta.Writes
}

// The history of what a session's pod wrote, from the writes its sidecar
// kept: the same writes as the API server applied them, and objects that
// agree with the live ones field for field where the requests tell them.
func testHistoryFromSession(t *testing.T, cp *testenv.ControlPlane, bin string) {
	k, rec := recordingKubectl(t, cp, bin)
	k.run("", "create", "namespace", sessionNS)
	want := script(k, sessionNS)
	writes := sessionWrites(t, rec)
	src, err := provenance.WritesSource("SnoopSession test/session", writes)
	if err != nil {
		t.Fatal(err)
	}
	var log []byte
	if r, err := src.Open(); err == nil {
		log, _ = io.ReadAll(r)
	}
	for _, secret := range secretValues {
		for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
			if bytes.Contains(log, []byte(form)) {
				t.Errorf("the session's writes hold secret value %q", form)
			}
		}
	}
	// Targets by plural: a Secret's or a protobuf create's body names no
	// kind.
	sessionTargets := map[string]string{
		"deploy": "deployments.apps/web", "cm": "configmaps/settings", "secret": "secrets/creds", "widget": "widgets.example.com/w1",
	}
	histories := map[string]*provenance.History{}
	for key, steps := range want {
		target, err := provenance.ParseTarget(sessionTargets[key], sessionNS)
		if err != nil {
			t.Fatal(err)
		}
		h, err := provenance.Read(context.Background(), []audit.Source{src}, target, provenance.Options{})
		if err != nil {
			t.Fatalf("%s from the session: %v", targets[key], err)
		}
		histories[key] = h
		var got, wantWrites []string
		for _, v := range h.Versions {
			got = append(got, v.Write())
		}
		for _, s := range steps {
			wantWrites = append(wantWrites, s.write)
		}
		if key == "secret" {
			// kubectl creates a Secret in protobuf, whose body the proxy
			// drops (it cannot redact it), and with it the only place
			// the create names the object: the session has the writes
			// that name it in their path.
			wantWrites = wantWrites[1:]
			steps = steps[1:]
		}
		if !reflect.DeepEqual(got, wantWrites) {
			t.Errorf("%s from the session: writes %v, want %v", targets[key], got, wantWrites)
			continue
		}
		for i, v := range h.Versions {
			switch {
			case key == "secret":
				// No body of a Secret is kept: who wrote, and when, only.
				if v.Object != nil && v.Source != provenance.Deleted {
					t.Errorf("secret version %d has an object: %s", v.Number, provenance.FormatValue(v.Object))
				}
			case v.Object == nil && v.Source != provenance.Deleted:
				// kubectl's generators (create deployment, create
				// configmap) send protobuf, which the recorder does not
				// keep: the object is unknown from such a create until a
				// write sends a whole object (update). The widget is
				// created from JSON, and the Deployment replaced.
				if v.Source != provenance.Unknown || key == "widget" || key == "deploy" && v.Number >= 7 && v.Number != 10 {
					t.Errorf("%s version %d (%s) from the session: no object (%s, %s)", targets[key], v.Number, v.Write(), v.Source, v.Note)
				}
			default:
				checkVersion(t, requestNS, targets[key], v, steps[i].truth)
			}
		}
	}
	var out bytes.Buffer
	if err := provenance.WriteHistory(&out, "text", histories["deploy"], provenance.RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl snoop history --session test/session -n %s deployments.apps/web:\n%s", sessionNS, out.String())
}
