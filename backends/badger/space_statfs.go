//go:build linux || darwin || freebsd || dragonfly

package badger

import "syscall"

// freeSpace returns the bytes available to an unprivileged process on the
// file system holding dir, and true: the platform tells.
func freeSpace(dir string) (int64, bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Bavail) * int64(st.Bsize), true, nil
}
