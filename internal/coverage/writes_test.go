package coverage

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testWrite(i int, completed time.Time, bodyBytes int) Write {
	return Write{
		ID: fmt.Sprintf("w%05d", i), Received: completed.Add(-time.Millisecond), Completed: completed,
		Verb: "patch", Resource: "configmaps", Namespace: "n", Name: "c", Status: 200,
		Request: []byte(`{"data":{"k":"` + strings.Repeat("v", bodyBytes) + `"}}`),
	}
}

// Deltas merged in any order, and writes added in any order, keep the same
// writes in the same order: the newest within the bounds.
func TestWritesMergeInAnyOrder(t *testing.T) {
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var all []Write
	for i := range MaxWrites + 700 {
		// Ties on Completed are broken by ID.
		all = append(all, testWrite(i, start.Add(time.Duration(i/3)*time.Millisecond), 10))
	}
	build := func(seed uint64) *Delta {
		r := rand.New(rand.NewPCG(seed, 1))
		order := r.Perm(len(all))
		parts := make([]Delta, 4)
		for _, i := range order {
			parts[r.IntN(len(parts))].AddWrite(all[i])
		}
		var d Delta
		for _, i := range r.Perm(len(parts)) {
			d.Merge(&parts[i])
		}
		return &d
	}
	a, b := build(1), build(2)
	if len(a.Writes) != MaxWrites || a.WritesDropped != 700 {
		t.Fatalf("kept %d, dropped %d; want %d and 700", len(a.Writes), a.WritesDropped, MaxWrites)
	}
	if !reflect.DeepEqual(a.Writes, all[700:]) || !reflect.DeepEqual(a.Writes, b.Writes) || a.WritesDropped != b.WritesDropped {
		t.Error("merging in another order kept other writes")
	}

	// Encoded and decoded, the writes and their byte count stay.
	data, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Writes, a.Writes) || back.writeBytes != a.writeBytes || back.WritesDropped != a.WritesDropped {
		t.Error("writes changed through Encode and Decode")
	}
}

func TestWritesBoundedInBytes(t *testing.T) {
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var d Delta
	const body = 64 << 10
	n := MaxWriteBytes/body + 10
	for i := range n {
		d.AddWrite(testWrite(i, start.Add(time.Duration(i)*time.Second), body))
	}
	if d.writeBytes > MaxWriteBytes || int(d.WritesDropped)+len(d.Writes) != n || d.WritesDropped < 10 {
		t.Fatalf("%d bytes in %d writes, %d dropped", d.writeBytes, len(d.Writes), d.WritesDropped)
	}
	if last := d.Writes[len(d.Writes)-1]; last.ID != fmt.Sprintf("w%05d", n-1) {
		t.Errorf("the newest write %s is not kept", last.ID)
	}
}

func TestWritesNeverKeepSecretBodies(t *testing.T) {
	var d Delta
	w := testWrite(1, time.Now(), 3)
	w.Resource = "secrets"
	w.Response = []byte(`{"data":{"k":"c2VjcmV0"}}`)
	d.AddWrite(w)
	if got := d.Writes[0]; got.Request != nil || got.Response != nil || got.Name != "c" {
		t.Errorf("kept %+v", got)
	}
	// A resource named secrets in another group is not a Secret.
	w.Group, w.ID, w.Completed = "example.com", "w2", w.Completed.Add(time.Second)
	d.AddWrite(w)
	if d.Writes[1].Request == nil {
		t.Error("a custom resource's body was dropped")
	}
}

func TestPrefixWriteIDs(t *testing.T) {
	var d Delta
	now := time.Now()
	d.AddWrite(testWrite(2, now, 1))
	d.AddWrite(testWrite(1, now, 1))
	d.PrefixWriteIDs("pod-uid/")
	if d.Writes[0].ID != "pod-uid/w00001" || d.Writes[1].ID != "pod-uid/w00002" {
		t.Errorf("IDs %s %s", d.Writes[0].ID, d.Writes[1].ID)
	}
}
