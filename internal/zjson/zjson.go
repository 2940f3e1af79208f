// Package zjson is the project's compact encoding of deltas, results and
// catalogs: JSON compressed with zstd. Output is a function of the input
// alone (one encoder goroutine), and a decoder inflates no more than its
// bound, so a small hostile frame cannot claim a large buffer.
package zjson

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Codec encodes at one compression level and decodes within one bound. Its
// zstd encoder and decoder are each made on first use and shared: a process
// that only decodes (the sidecar reading a catalog) never holds an
// encoder's window in memory.
type Codec struct {
	// Name says what is encoded, in errors ("delta", "results").
	Name       string
	Level      zstd.EncoderLevel
	MaxDecoded uint64
	// Window, when set, is the encoder's window in bytes, with zstd's
	// lower-memory encoder. The encoder is kept for the life of the process,
	// and at SpeedBetterCompression with the default window it holds about
	// 20 MiB of tables and history whatever it encodes; a 256 KiB window at
	// SpeedFastest holds under 1 MiB, for output about a third larger.
	Window int

	encOnce, decOnce sync.Once
	enc              *zstd.Encoder
	dec              *zstd.Decoder
	encErr, decErr   error
}

// Resident is a codec for what a process encodes for its whole life, as
// every recording sidecar encodes its deltas: the encoder it keeps is the
// small one (SpeedFastest, zstd's lower-memory encoder, a 256 KiB window),
// under 1 MiB where SpeedBetterCompression keeps about 20
// (TestResidentEncoderIsSmall holds it, with the JSON encoder's pooled
// buffer, under 4 MiB and a quarter of the other).
func Resident(name string, maxDecoded uint64) *Codec {
	return &Codec{Name: name, Level: zstd.SpeedFastest, Window: 256 << 10, MaxDecoded: maxDecoded}
}

func (c *Codec) encoder() (*zstd.Encoder, error) {
	c.encOnce.Do(func() {
		opts := []zstd.EOption{zstd.WithEncoderLevel(c.Level), zstd.WithEncoderConcurrency(1)}
		if c.Window > 0 {
			opts = append(opts, zstd.WithWindowSize(c.Window), zstd.WithLowerEncoderMem(true))
		}
		c.enc, c.encErr = zstd.NewWriter(nil, opts...)
	})
	return c.enc, c.encErr
}

func (c *Codec) decoder() (*zstd.Decoder, error) {
	c.decOnce.Do(func() {
		c.dec, c.decErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(c.MaxDecoded))
	})
	return c.dec, c.decErr
}

// Encode writes v as compressed JSON.
func (c *Codec) Encode(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Name, err)
	}
	enc, err := c.encoder()
	if err != nil {
		return nil, fmt.Errorf("create zstd codec: %w", err)
	}
	return enc.EncodeAll(raw, nil), nil
}

// Decode reads what Encode writes into v.
func (c *Codec) Decode(data []byte, v any) error {
	dec, err := c.decoder()
	if err != nil {
		return fmt.Errorf("create zstd codec: %w", err)
	}
	raw, err := dec.DecodeAll(data, nil)
	if err != nil {
		return fmt.Errorf("decompress %s: %w", c.Name, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s: %w", c.Name, err)
	}
	return nil
}
