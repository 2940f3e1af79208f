package coverage

import (
	"encoding/json"
	"sort"

	"apisnoop.dev/kube-apisnoop/internal/zjson"
)

// clientEntry is a Client with its counts, for serialization: JSON object
// keys must be strings, so clients travel as a list.
type clientEntry struct {
	Client
	ClientCounts
}

// MarshalJSON writes clients as a list sorted by client, so equal deltas
// serialize to equal bytes.
func (d *Delta) MarshalJSON() ([]byte, error) {
	type plain Delta // no MarshalJSON: avoids recursion
	w := struct {
		*plain
		Clients []clientEntry `json:"clients,omitempty"`
	}{plain: (*plain)(d)}
	for c, counts := range d.Clients {
		w.Clients = append(w.Clients, clientEntry{Client: c, ClientCounts: *counts})
	}
	sort.Slice(w.Clients, func(i, j int) bool { return clientLess(w.Clients[i].Client, w.Clients[j].Client) })
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Delta) UnmarshalJSON(data []byte) error {
	type plain Delta
	w := struct {
		*plain
		Clients []clientEntry `json:"clients,omitempty"`
	}{plain: (*plain)(d)}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if len(w.Clients) > 0 {
		d.Clients = make(map[Client]*ClientCounts, len(w.Clients))
		for i := range w.Clients {
			counts := w.Clients[i].ClientCounts
			d.Clients[w.Clients[i].Client] = &counts
		}
	}
	d.countFieldEntries()
	d.countWriteBytes()
	return nil
}

func clientLess(a, b Client) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Pod != b.Pod {
		return a.Pod < b.Pod
	}
	if a.ServiceAccount != b.ServiceAccount {
		return a.ServiceAccount < b.ServiceAccount
	}
	if a.User != b.User {
		return a.User < b.User
	}
	return a.UserAgent < b.UserAgent
}

// deltaCodec bounds a decoded delta at 32 MiB: its maps are bounded (see
// MaxClients, MaxUnknownPaths), and a full one encodes to about 10 MB.
// Every recording sidecar encodes deltas for the life of its pod, so the
// codec is zjson.Resident: at SpeedBetterCompression the encoder held about
// 20 MiB, more than the rest of the sidecar.
var deltaCodec = zjson.Resident("delta", 32<<20)

// Encode serializes a delta compactly: JSON compressed with zstd.
func Encode(d *Delta) ([]byte, error) { return deltaCodec.Encode(d) }

// Decode reads what Encode writes.
func Decode(data []byte) (*Delta, error) {
	d := &Delta{}
	if err := deltaCodec.Decode(data, d); err != nil {
		return nil, err
	}
	return d, nil
}
