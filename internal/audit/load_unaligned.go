//go:build amd64 || arm64

package audit

import "unsafe"

// load64 is the little-endian word of the 8 bytes at p+i, which the caller
// has checked are in bounds. These processors load a word from any address:
// one load, no bounds check, fewer values live in the decoder's loops.
func load64(p unsafe.Pointer, i int) uint64 { return *(*uint64)(unsafe.Add(p, i)) }
