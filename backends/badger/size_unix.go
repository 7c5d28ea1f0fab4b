//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package badger

import (
	"io/fs"
	"syscall"
)

// diskUsage returns the disk space allocated to a file: badger's write-ahead
// log and value log files are sparse, preallocated to twice their nominal
// size, so their length overstates it.
func diskUsage(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
