package provenance_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/audit"
	"apisnoop.dev/kube-apisnoop/internal/provenance"
	"apisnoop.dev/kube-apisnoop/internal/testenv"
)

// The two namespaces the same script runs in: the API server logs bodies
// and responses in one, request bodies only in the other.
const (
	responseNS = "prov-response"
	requestNS  = "prov-request"
)

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  namespaces: ["` + responseNS + `"]
- level: Request
  namespaces: ["` + requestNS + `"]
- level: Metadata
`

// Secret values the script writes; none may ever be printed.
var secretValues = []string{"hunter2-s3cr3t", "tok-s3cr3t", "rotated-s3cr3t"}

// step is one kubectl write and the object it leaves (nil when deleted),
// read back with kubectl get right after.
type step struct {
	write string // as Version.Write names it
	truth map[string]any
}

type kubectl struct {
	t           *testing.T
	bin, config string
}

func (k kubectl) run(stdin string, args ...string) []byte {
	k.t.Helper()
	cmd := exec.Command(k.bin, append([]string{"--kubeconfig", k.config}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func (k kubectl) get(ns, resource, name string) map[string]any {
	k.t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(k.run("", "get", "-n", ns, resource, name, "-o", "json"), &obj); err != nil {
		k.t.Fatal(err)
	}
	return obj
}

// script drives every kind of write kubectl makes against a Deployment, a
// ConfigMap, a Secret and a custom resource in ns, and returns what each
// write left, per object.
func script(k kubectl, ns string) map[string][]step {
	steps := map[string][]step{}
	record := func(key, resource, name, write string) {
		steps[key] = append(steps[key], step{write: write, truth: k.get(ns, resource, name)})
	}
	deleted := func(key, write string) { steps[key] = append(steps[key], step{write: write}) }

	k.run("", "-n", ns, "create", "deployment", "web", "--image=nginx:1.25")
	record("deploy", "deployments", "web", "create")
	k.run(fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":%q,"labels":{"team":"a"}},
		"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},
		"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}}`, ns),
		"apply", "--server-side", "--force-conflicts", "-f", "-")
	record("deploy", "deployments", "web", "apply")
	k.run("", "-n", ns, "patch", "deployment", "web", "-p", `{"spec":{"replicas":3}}`)
	record("deploy", "deployments", "web", "patch")
	k.run("", "-n", ns, "patch", "deployment", "web", "--type=merge", "-p", `{"metadata":{"labels":{"tier":"web"}}}`)
	record("deploy", "deployments", "web", "patch")
	k.run("", "-n", ns, "patch", "deployment", "web", "--type=json", "-p",
		`[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.26"}]`)
	record("deploy", "deployments", "web", "patch")
	k.run("", "-n", ns, "scale", "deployment", "web", "--replicas=5")
	record("deploy", "deployments", "web", "patch scale")
	current := k.get(ns, "deployments", "web")
	current["metadata"].(map[string]any)["annotations"] = map[string]any{"owner": "platform"}
	replaced, _ := json.Marshal(current)
	k.run(string(replaced), "replace", "-f", "-")
	record("deploy", "deployments", "web", "update")
	k.run("", "-n", ns, "patch", "deployment", "web", "--subresource=status", "--type=merge", "-p", `{"status":{"observedGeneration":42}}`)
	record("deploy", "deployments", "web", "patch status")
	k.run("", "-n", ns, "delete", "deployment", "web")
	deleted("deploy", "delete")
	k.run("", "-n", ns, "create", "deployment", "web", "--image=nginx:1.27")
	record("deploy", "deployments", "web", "create")

	k.run("", "-n", ns, "create", "configmap", "settings", "--from-literal=a=1")
	record("cm", "configmaps", "settings", "create")
	// Client-side apply: a strategic merge patch of the live object.
	k.run(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":%q},"data":{"a":"1","b":"2"}}`, ns), "apply", "-f", "-")
	record("cm", "configmaps", "settings", "patch")
	k.run("", "-n", ns, "patch", "configmap", "settings", "--type=merge", "-p", `{"data":{"a":null,"c":"3"}}`)
	record("cm", "configmaps", "settings", "patch")

	k.run("", "-n", ns, "create", "secret", "generic", "creds", "--from-literal=password="+secretValues[0])
	record("secret", "secrets", "creds", "create")
	k.run("", "-n", ns, "patch", "secret", "creds", "--type=merge", "-p", `{"stringData":{"token":"`+secretValues[1]+`"}}`)
	record("secret", "secrets", "creds", "patch")
	k.run("", "-n", ns, "patch", "secret", "creds", "--type=json", "-p",
		`[{"op":"replace","path":"/data/password","value":"`+base64.StdEncoding.EncodeToString([]byte(secretValues[2]))+`"}]`)
	record("secret", "secrets", "creds", "patch")

	k.run(fmt.Sprintf(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w1","namespace":%q},"spec":{"size":1,"parts":[{"name":"a","color":"red"}]}}`, ns), "create", "-f", "-")
	record("widget", "widgets", "w1", "create")
	k.run("", "-n", ns, "patch", "widget", "w1", "--type=merge", "-p", `{"spec":{"size":2}}`)
	record("widget", "widgets", "w1", "patch")
	k.run("", "-n", ns, "patch", "widget", "w1", "--type=json", "-p", `[{"op":"add","path":"/spec/parts/-","value":{"name":"b","color":"blue"}}]`)
	record("widget", "widgets", "w1", "patch")
	k.run(fmt.Sprintf(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w1","namespace":%q},"spec":{"size":3}}`, ns),
		"apply", "--server-side", "--force-conflicts", "-f", "-")
	record("widget", "widgets", "w1", "apply")
	return steps
}

var targets = map[string]string{
	"deploy": "deployments.apps/web",
	"cm":     "configmap/settings",
	"secret": "secrets/creds",
	"widget": "Widget/w1",
}

func TestHistoryFromRealAuditLogs(t *testing.T) {
	cp := testenv.StartForTest(t, testenv.WithAuditPolicy(auditPolicy))
	bin, err := testenv.Kubectl("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	k := kubectl{t: t, bin: bin, config: cp.Kubeconfig}
	k.run("", "apply", "-f", testenv.WidgetsCRD())
	k.run("", "wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=60s")
	for _, ns := range []string{responseNS, requestNS} {
		k.run("", "create", "namespace", ns)
	}
	want := map[string]map[string][]step{responseNS: script(k, responseNS), requestNS: script(k, requestNS)}
	cp.WaitForAuditLog(t)
	t.Run("session", func(t *testing.T) { testHistoryFromSession(t, cp, bin) })

	histories := map[string]map[string]*provenance.History{}
	for ns, objects := range want {
		histories[ns] = map[string]*provenance.History{}
		for key, steps := range objects {
			target, err := provenance.ParseTarget(targets[key], ns)
			if err != nil {
				t.Fatal(err)
			}
			h, err := provenance.Read(context.Background(), []audit.Source{fileSource(cp.AuditLog)}, target, provenance.Options{})
			if err != nil {
				t.Fatalf("%s in %s: %v", targets[key], ns, err)
			}
			histories[ns][key] = h
			if h.Stats.Malformed != 0 {
				t.Errorf("%d malformed lines in the API server's own log", h.Stats.Malformed)
			}
			var writes, wantWrites []string
			for _, v := range h.Versions {
				writes = append(writes, v.Write())
			}
			for _, s := range steps {
				wantWrites = append(wantWrites, s.write)
			}
			if !reflect.DeepEqual(writes, wantWrites) {
				t.Errorf("%s in %s: writes %v, want %v", targets[key], ns, writes, wantWrites)
				continue
			}
			for i, v := range h.Versions {
				checkVersion(t, ns, targets[key], v, steps[i].truth)
			}
		}
	}

	for _, ns := range []string{responseNS, requestNS} {
		var out bytes.Buffer
		if err := provenance.WriteHistory(&out, "text", histories[ns]["deploy"], provenance.RenderOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Logf("kubectl snoop history -n %s deployments.apps/web:\n%s", ns, out.String())
	}

	// Objects deleted and created again are told apart by uid where the
	// log has responses.
	deploy := histories[responseNS]["deploy"]
	if n := len(deploy.Versions); n == 10 {
		first, last := deploy.Versions[0].UID, deploy.Versions[9].UID
		if first == "" || first == last || deploy.Versions[7].UID != first {
			t.Errorf("uids: first object %q (version 8: %q), second %q", first, deploy.Versions[7].UID, last)
		}
	}

	// bisect finds the same first version from responses and from
	// reconstructed objects, and matches conditions inside one element.
	for _, ns := range []string{responseNS, requestNS} {
		h := histories[ns]["deploy"]
		for where, wantVersion := range map[string]int{
			"spec.replicas=3": 3,
			"spec.template.spec.containers.name=nginx,spec.template.spec.containers.image=nginx:1.26":     5,
			"spec.template.spec.containers[].name=nginx,spec.template.spec.containers[].image=nginx:1.99": 0,
			"metadata.labels.tier=web,spec.replicas=5":                                                    6,
			"spec.template.spec.containers.image=nginx:1.27":                                              10,
		} {
			conds, err := provenance.ParseWhere(where)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			if v := provenance.Bisect(h, conds); v != nil {
				got = v.Number
			}
			if got != wantVersion {
				t.Errorf("%s: bisect %s = version %d, want %d", ns, where, got, wantVersion)
			}
		}
	}

	// diff: field by field between two versions, list elements by name.
	h := histories[responseNS]["deploy"]
	changes := map[string]string{}
	for _, c := range provenance.Diff(h.Versions[1].Object, h.Versions[4].Object) {
		changes[c.Path] = c.Kind + " " + provenance.FormatValue(c.Old) + " → " + provenance.FormatValue(c.New)
	}
	for path, change := range map[string]string{
		"spec.replicas":        "changed 2 → 3",
		"metadata.labels.tier": "added null → web",
		"spec.template.spec.containers[name=nginx].image": "changed nginx:1.25 → nginx:1.26",
	} {
		if changes[path] != change {
			t.Errorf("diff 2 5: %s is %q, want %q (all: %v)", path, changes[path], change, changes)
		}
	}
	if _, ok := changes["metadata.resourceVersion"]; ok {
		t.Error("diff shows metadata.resourceVersion")
	}

	// Secret data never appears, in any format, with objects and diffs.
	for _, ns := range []string{responseNS, requestNS} {
		h := histories[ns]["secret"]
		var out bytes.Buffer
		for _, format := range provenance.Formats {
			if err := provenance.WriteHistory(&out, format, h, provenance.RenderOptions{Objects: true}); err != nil {
				t.Fatal(err)
			}
			if err := provenance.WriteDiff(&out, format, h, provenance.DiffResult{From: 1, To: 3, Changes: provenance.Diff(h.Versions[0].Object, h.Versions[2].Object)}); err != nil {
				t.Fatal(err)
			}
		}
		for _, secret := range secretValues {
			for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
				if bytes.Contains(out.Bytes(), []byte(form)) {
					t.Errorf("%s: secret value %q printed", ns, form)
				}
			}
		}
		if !bytes.Contains(out.Bytes(), []byte(provenance.Redacted)) {
			t.Errorf("%s: no redacted value printed for the Secret:\n%s", ns, out.String())
		}
	}
}

// checkVersion compares a version's object with what kubectl get read
// right after the write: equal when it is the API server's response; when
// it comes from the request or is reconstructed, every field of spec,
// data, labels and annotations it has must be the live object's.
func checkVersion(t *testing.T, ns, target string, v provenance.Version, truth map[string]any) {
	t.Helper()
	if truth == nil {
		if v.Source != provenance.Deleted {
			t.Errorf("%s %s version %d: source %s, want deleted", ns, target, v.Number, v.Source)
		}
		return
	}
	if v.Object == nil {
		t.Errorf("%s %s version %d (%s): no object (%s)", ns, target, v.Number, v.Write(), v.Note)
		return
	}
	redact := strings.HasPrefix(target, "secrets/")
	if redact {
		truth = redacted(truth)
	}
	switch ns {
	case responseNS:
		if v.Subresource == "scale" {
			// The API server answers a scale write with a Scale.
			if v.Source != provenance.Reconstructed || !reflect.DeepEqual(v.Object["spec"], truth["spec"]) {
				t.Errorf("%s %s version %d (%s, %s): spec %s, want %s", ns, target, v.Number, v.Write(), v.Source,
					provenance.FormatValue(v.Object["spec"]), provenance.FormatValue(truth["spec"]))
			}
			return
		}
		if v.Source != provenance.FromResponse {
			t.Errorf("%s %s version %d: source %s, want response", ns, target, v.Number, v.Source)
		}
		if changes := provenance.Diff(truth, v.Object); len(changes) != 0 {
			t.Errorf("%s %s version %d (%s) differs from the live object: %+v", ns, target, v.Number, v.Write(), changes)
		}
	case requestNS:
		if v.Source == provenance.FromResponse || v.Source == provenance.Unknown {
			t.Errorf("%s %s version %d: source %s at Request level", ns, target, v.Number, v.Source)
		}
		for _, field := range []string{"spec", "data", "metadata.labels", "metadata.annotations"} {
			got, want := lookup(v.Object, field), lookup(truth, field)
			if got == nil {
				continue
			}
			if !contained(got, want) {
				t.Errorf("%s %s version %d (%s, %s): %s = %s, not in the live object's %s", ns, target, v.Number, v.Write(), string(v.Source)+" "+v.Note, field,
					provenance.FormatValue(got), provenance.FormatValue(want))
			}
		}
	}
}

func lookup(obj map[string]any, path string) any {
	var node any = obj
	for _, step := range strings.Split(path, ".") {
		m, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		node = m[step]
	}
	return node
}

// contained reports whether every field set in got has the same value in
// want (lists element by element).
func contained(got, want any) bool {
	switch g := got.(type) {
	case map[string]any:
		w, ok := want.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range g {
			if !contained(v, w[k]) {
				return false
			}
		}
		return true
	case []any:
		w, ok := want.([]any)
		if !ok || len(w) != len(g) {
			return false
		}
		for i := range g {
			if !contained(g[i], w[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(got, want)
}

func redacted(obj map[string]any) map[string]any {
	for _, field := range []string{"data", "stringData"} {
		if m, ok := obj[field].(map[string]any); ok {
			for k := range m {
				m[k] = provenance.Redacted
			}
		}
	}
	return obj
}

func fileSource(path string) audit.Source {
	return audit.Source{Name: path, Open: func() (io.ReadCloser, error) { return os.Open(path) }}
}
