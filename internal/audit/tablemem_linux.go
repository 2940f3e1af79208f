package audit

import "syscall"

const canMapTables = true

// mapTable maps size bytes of zeroed memory, asking for huge pages
// (madvise: the system's default for transparent huge pages is often to
// give them only where asked), or returns nil.
func mapTable(size int) []byte {
	size = (size + hugeTable - 1) &^ (hugeTable - 1)
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return nil
	}
	const madvHugePage = 14 // MADV_HUGEPAGE on every Linux architecture
	_ = syscall.Madvise(b, madvHugePage)
	return b
}

func unmapTable(b []byte) { _ = syscall.Munmap(b) }
