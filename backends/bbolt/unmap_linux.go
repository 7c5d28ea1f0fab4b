package bbolt

import (
	"os"

	"golang.org/x/sys/unix"
)

// unmapPages drops the pages of the file mapping at addr, size bytes long,
// from the process's page tables (MADV_DONTNEED on a shared file mapping:
// the page cache keeps them). Best effort: an error leaves them mapped.
func unmapPages(addr uintptr, size int64) {
	page := int64(os.Getpagesize())
	size = (size + page - 1) / page * page
	if addr == 0 || size == 0 {
		return
	}
	unix.Syscall(unix.SYS_MADVISE, addr, uintptr(size), unix.MADV_DONTNEED)
}
