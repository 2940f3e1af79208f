package audit

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const canMapTables = true

// mapTable maps size bytes of zeroed memory on a huge-page boundary, asking
// for huge pages (madvise: the system's default for transparent huge pages
// is often to give them only where asked), or returns nil. Kernels before
// 6.7 place an anonymous mapping on any page boundary, where a 2 MiB table
// would get no huge page at all: the mapping is made one huge page longer
// and the slack before and after the boundary given back.
func mapTable(size int) []byte {
	size = (size + hugeTable - 1) &^ (hugeTable - 1)
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(size+hugeTable), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil
	}
	head := int((hugeTable - uintptr(p)%hugeTable) % hugeTable)
	if head > 0 {
		_ = unix.MunmapPtr(p, uintptr(head))
	}
	aligned := unsafe.Add(p, head)
	if tail := hugeTable - head; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(aligned, size), uintptr(tail))
	}
	b := unsafe.Slice((*byte)(aligned), size)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	return b
}

func unmapTable(b []byte) { _ = unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(cap(b))) }
