// Package results is a session's collected results: the merged coverage of
// its sidecars with what the merge needs to stay exact across restarts, the
// ConfigMaps they are persisted in, and the summary they give the session's
// status.
package results

import (
	"encoding/json"

	"github.com/klauspost/compress/zstd"

	"apisnoop.dev/kube-apisnoop/internal/coverage"
	"apisnoop.dev/kube-apisnoop/internal/zjson"
)

// State is what a session collected.
type State struct {
	// Delta is the merged coverage of every accepted batch.
	Delta coverage.Delta
	// Sources maps a sidecar source (its pod's UID) to the sequence number of
	// the last batch merged from it. Persisted with Delta in one object, so a
	// restored collector drops exactly the batches Delta already holds and a
	// restart never counts a batch twice.
	Sources map[string]uint64
	// Ignored counts the requests shipped after the session stopped or while
	// it was suspended: accepted, counted here, never merged into Delta.
	Ignored int64
}

// stateJSON is State's serialized form. Delta travels by pointer: its
// MarshalJSON, which writes the clients, has a pointer receiver.
type stateJSON struct {
	Delta   *coverage.Delta   `json:"delta"`
	Sources map[string]uint64 `json:"sources,omitempty"`
	Ignored int64             `json:"ignored,omitempty"`
}

// MarshalJSON writes the state; equal states serialize to equal bytes.
func (s State) MarshalJSON() ([]byte, error) {
	return json.Marshal(stateJSON{Delta: &s.Delta, Sources: s.Sources, Ignored: s.Ignored})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *State) UnmarshalJSON(data []byte) error {
	w := stateJSON{Delta: &coverage.Delta{}}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*s = State{Delta: *w.Delta, Sources: w.Sources, Ignored: w.Ignored}
	return nil
}

// maxStateBytes bounds a decompressed state. The bounds of a Delta
// (coverage.MaxClients, coverage.MaxUnknownPaths) keep real states far
// below it; it stops a corrupt or hostile ConfigMap from exhausting memory.
const maxStateBytes = 512 << 20

var stateCodec = &zjson.Codec{Name: "results", Level: zstd.SpeedBetterCompression, MaxDecoded: maxStateBytes}

// encode serializes a state as zstd-compressed JSON.
func encode(st *State) ([]byte, error) { return stateCodec.Encode(st) }

// decode reads what encode writes.
func decode(data []byte) (*State, error) {
	st := &State{}
	if err := stateCodec.Decode(data, st); err != nil {
		return nil, err
	}
	return st, nil
}
