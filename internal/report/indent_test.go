package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// encoderJSON is what writeJSON replaced.
func encoderJSON(t *testing.T, v any) string {
	t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestWriteJSONIsTheEncoders: byte for byte json.Encoder's output with
// SetIndent("", "  "), on values with empty and nested objects and arrays,
// escapes and HTML characters in strings and names, numbers and literals.
func TestWriteJSONIsTheEncoders(t *testing.T) {
	values := []any{
		map[string]any{},
		[]any{},
		map[string]any{"a": []any{}, "b": map[string]any{}, "c": []any{map[string]any{}, []any{[]any{}}}},
		map[string]any{`q"uo\te`: `a "b" \c <d> & é ` + "\n\t\x01", "n": -1.5e-7, "t": true, "f": false, "z": nil, "i": 12345678901234},
		[]any{1, "x", []any{2, []any{3, map[string]any{"k": []any{}}}}, nil},
		json.RawMessage(`{"raw" : [ 1 , {} ] }`),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		values = append(values, randomValue(rng, 4))
	}
	for _, v := range values {
		var b bytes.Buffer
		if err := writeJSON(&b, v); err != nil {
			t.Fatal(err)
		}
		if want := encoderJSON(t, v); b.String() != want {
			t.Fatalf("writeJSON(%#v):\n%s\nwant\n%s", v, b.String(), want)
		}
	}
}

func randomValue(rng *rand.Rand, depth int) any {
	switch k := rng.IntN(8); {
	case depth > 0 && k < 2:
		m := map[string]any{}
		for range rng.IntN(4) {
			m[randomString(rng)] = randomValue(rng, depth-1)
		}
		return m
	case depth > 0 && k < 4:
		var a []any
		for range rng.IntN(4) {
			a = append(a, randomValue(rng, depth-1))
		}
		return a
	case k == 4:
		return rng.NormFloat64() * 1e6
	case k == 5:
		return rng.IntN(3) == 0
	case k == 6:
		return nil
	}
	return randomString(rng)
}

func randomString(rng *rand.Rand) string {
	const chars = "ab\"\\{}[],: <>&\n\x00é"
	r := []rune(chars)
	var b strings.Builder
	for range rng.IntN(6) {
		b.WriteRune(r[rng.IntN(len(r))])
	}
	return b.String()
}

// A failing writer's error is returned.
func TestWriteJSONError(t *testing.T) {
	if err := writeJSON(failWriter{}, strings.Repeat("x", 1<<17)); err == nil {
		t.Error("no error from a failing writer")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("fail") }
