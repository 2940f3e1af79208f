package zjson

import (
	"bytes"
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
