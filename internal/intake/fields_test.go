package intake

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/fields"
)

// deploymentCreate is the operation of sampleDelta's one body.
const deploymentCreate = "createAppsV1NamespacedDeployment"

func TestReadRequestRefusesBadFields(t *testing.T) {
	withDelta := func(change func(d *coverage.Delta)) []byte {
		d := sampleDelta()
		change(d)
		return encode(t, d)
	}
	counts := func(d *coverage.Delta) *coverage.FieldCounts { return d.Fields[deploymentCreate] }
	cases := []struct {
		name string
		body []byte
		want string // in the error
	}{
		{"null field counts", compress([]byte(`{"requests":1,"operations":{"a":{"requests":1}},"fields":{"a":null}}`)), "null field counts"},
		{"empty operation ID", compress([]byte(`{"requests":1,"operations":{"a":{"requests":1}},"fields":{"":{"bodies":1}}}`)), "operation ID"},
		{"operation ID too long", withDelta(func(d *coverage.Delta) {
			id := strings.Repeat("x", maxOperationID+1)
			d.Add(coverage.Hit{OperationID: id, Verb: "create", Status: 201})
			d.AddFields(id, fields.Result{Set: []string{"metadata"}}, 1)
		}), "operation ID"},
		{"bodies of an operation without requests", withDelta(func(d *coverage.Delta) {
			d.AddFields("createCoreV1Namespace", fields.Result{Set: []string{"metadata"}}, 1)
		}), "bodies of operation"},
		{"more bodies than requests", withDelta(func(d *coverage.Delta) {
			d.AddFields(deploymentCreate, fields.Result{Set: []string{"metadata"}}, 1)
		}), "bodies of operation"},
		{"negative bodies", withDelta(func(d *coverage.Delta) { counts(d).Bodies = -1 }), "field counts of operation"},
		{"negative malformed", withDelta(func(d *coverage.Delta) { counts(d).Malformed = -1 }), "field counts of operation"},
		{"more malformed than bodies", withDelta(func(d *coverage.Delta) { counts(d).Malformed = 2 }), "field counts of operation"},
		{"negative overflow", withDelta(func(d *coverage.Delta) { counts(d).Overflow = -1 }), "field counts of operation"},
		{"negative path count", withDelta(func(d *coverage.Delta) { counts(d).Set["metadata"] = -1 }), "set field path"},
		{"path in more bodies than read", withDelta(func(d *coverage.Delta) { counts(d).Unknown["spec.replica"] = 2 }), "unknown field path"},
		{"path of a malformed body", withDelta(func(d *coverage.Delta) { counts(d).Malformed = 1 }), "set field path"},
		{"empty path", withDelta(func(d *coverage.Delta) { counts(d).IllTyped[""] = 1 }), "ill-typed field path"},
		{"path too long", withDelta(func(d *coverage.Delta) { counts(d).Set[strings.Repeat("a", MaxFieldPath+1)] = 1 }), "set field path"},
		{"too many unknown paths", withDelta(func(d *coverage.Delta) {
			for i := range coverage.MaxUnknownFields {
				counts(d).Unknown[fmt.Sprint("x", i)] = 1
			}
		}), "unknown field paths"},
		{"too many set paths", withDelta(func(d *coverage.Delta) {
			for i := range coverage.MaxSetFields {
				counts(d).Set[fmt.Sprint("x", i)] = 1
			}
		}), "set field paths"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRequest(request(http.MethodPost, nil, tc.body), 0)
			e, ok := errors.AsType[*Error](err)
			if !ok || e.Status != http.StatusBadRequest || e.Reason != ReasonDelta || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadRequest: %v, want an *Error with status 400, reason %s, saying %q", err, ReasonDelta, tc.want)
			}
		})
	}
}

func TestReadRequestAcceptsFieldsAtTheBounds(t *testing.T) {
	d := sampleDelta()
	r := fields.Result{Set: []string{strings.Repeat("a", MaxFieldPath)}}
	for i := range coverage.MaxSetFields - 1 {
		r.Set = append(r.Set, fmt.Sprint("x", i))
	}
	for i := range coverage.MaxUnknownFields {
		r.Unknown = append(r.Unknown, fmt.Sprint("u", i))
		r.IllTyped = append(r.IllTyped, fmt.Sprint("x", i))
	}
	d.Add(coverage.Hit{OperationID: "createCoreV1Namespace", Verb: "create", Status: 201})
	d.Add(coverage.Hit{OperationID: "createCoreV1Namespace", Verb: "create", Status: 400})
	d.AddFields("createCoreV1Namespace", r, 1)
	d.AddMalformedBodies("createCoreV1Namespace", 1)
	if fc := d.Fields["createCoreV1Namespace"]; fc.Overflow != 0 || len(fc.Set) != coverage.MaxSetFields {
		t.Fatalf("the delta lost paths: %d set, overflow %d", len(fc.Set), fc.Overflow)
	}
	b, err := ReadRequest(request(http.MethodPost, nil, encode(t, d)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sameDelta(t, b.Delta, d) {
		t.Error("the delta read is not the one sent")
	}
}

// TestCheckDeltaBoundsFieldEntries checks the bound over all operations
// directly: a delta beyond it is larger than the codec decodes.
func TestCheckDeltaBoundsFieldEntries(t *testing.T) {
	d := &coverage.Delta{Fields: map[string]*coverage.FieldCounts{}}
	for op := 0; op*coverage.MaxSetFields <= coverage.MaxFieldEntries; op++ {
		id := fmt.Sprint("op", op)
		d.Add(coverage.Hit{OperationID: id, Verb: "create", Status: 201})
		fc := &coverage.FieldCounts{Bodies: 1, Set: make(map[string]int64, coverage.MaxSetFields)}
		for i := range coverage.MaxSetFields {
			fc.Set[fmt.Sprint("x", i)] = 1
		}
		d.Fields[id] = fc
	}
	err := checkDelta(d)
	if err == nil || !strings.Contains(err.Error(), "field paths, at most") {
		t.Errorf("checkDelta: %v, want the bound over all operations", err)
	}
}

func TestValidFieldPath(t *testing.T) {
	for path, want := range map[string]bool{
		"spec.template.spec.containers[].image": true,
		"metadata.labels{}":                     true,
		"spec.\u00e9t\u00e9":                    true,
		"":                                      false,
		"spec.\xff":                             false,
		strings.Repeat("a", MaxFieldPath):       true,
		strings.Repeat("a", MaxFieldPath+1):     false,
	} {
		if got := ValidFieldPath(path); got != want {
			t.Errorf("ValidFieldPath(%.40q) = %t, want %t", path, got, want)
		}
	}
}
