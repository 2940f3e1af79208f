//go:build !(amd64 || arm64)

package audit

import (
	"encoding/binary"
	"unsafe"
)

// load64 is the little-endian word of the 8 bytes at p+i, which the caller
// has checked are in bounds.
func load64(p unsafe.Pointer, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(p, i)), 8))
}
