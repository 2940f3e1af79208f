package zjson

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func TestRoundTripIsDeterministic(t *testing.T) {
	c := &Codec{Name: "test", Level: zstd.SpeedBetterCompression, MaxDecoded: 1 << 20}
	in := map[string]int{"a": 1, "b": 2}
	first, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	second, _ := c.Encode(in)
	if !bytes.Equal(first, second) {
		t.Error("equal input encoded to different bytes")
	}
	var out map[string]int
	if err := c.Decode(first, &out); err != nil || out["b"] != 2 {
		t.Errorf("Decode: %v, %v", out, err)
	}
}

func TestDecodeRefusesMoreThanItsBound(t *testing.T) {
	big := &Codec{Name: "big", Level: zstd.SpeedFastest, MaxDecoded: 64 << 20}
	data, err := big.Encode(strings.Repeat("x", 4<<20))
	if err != nil {
		t.Fatal(err)
	}
	small := &Codec{Name: "small", Level: zstd.SpeedFastest, MaxDecoded: 1 << 20}
	var s string
	if err := small.Decode(data, &s); err == nil {
		t.Error("a 4 MiB document decoded within a 1 MiB bound")
	}
	if err := small.Decode([]byte("not zstd"), &s); err == nil || !strings.Contains(err.Error(), "decompress small") {
		t.Errorf("junk: %v, want a decompress error naming the codec", err)
	}
}

// retainedByEncoder is the heap an encoder of c keeps after encoding doc
// once, and what it wrote.
func retainedByEncoder(t *testing.T, c *Codec, doc any) (retained int64, data []byte) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	data, err := c.Encode(doc)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(c)
	return max(0, int64(after.HeapInuse)-int64(before.HeapInuse)), data
}

// TestResidentEncoderIsSmall: the encoder a Resident codec keeps (the
// sidecar's, for deltas) is a fraction of an unwindowed
// SpeedBetterCompression one, and what it writes decodes with an ordinary
// codec of the same bound, to the same value, the same way every time.
func TestResidentEncoderIsSmall(t *testing.T) {
	doc := map[string]string{}
	for i := range 20000 {
		doc[strings.Repeat("k", i%7)+string(rune('a'+i%26))+strings.Repeat("0", i%5)+strconv.Itoa(i)] = strings.Repeat("value ", i%9)
	}
	small := Resident("small", 32<<20)
	smallKept, data := retainedByEncoder(t, small, doc)
	if again, _ := small.Encode(doc); !bytes.Equal(again, data) {
		t.Error("equal input encoded to different bytes")
	}
	var out map[string]string
	if err := (&Codec{Name: "plain", MaxDecoded: 32 << 20}).Decode(data, &out); err != nil || len(out) != len(doc) {
		t.Fatalf("decode: %d entries, %v; want %d", len(out), err, len(doc))
	}
	bigKept, _ := retainedByEncoder(t, &Codec{Name: "big", Level: zstd.SpeedBetterCompression, MaxDecoded: 32 << 20}, doc)
	t.Logf("encoder keeps %.1f MiB windowed, %.1f MiB at SpeedBetterCompression (%d bytes encoded)", float64(smallKept)/(1<<20), float64(bigKept)/(1<<20), len(data))
	if smallKept > 4<<20 || smallKept*4 > bigKept {
		t.Errorf("the windowed encoder keeps %.1f MiB, want under 4 and under a quarter of %.1f", float64(smallKept)/(1<<20), float64(bigKept)/(1<<20))
	}
}
