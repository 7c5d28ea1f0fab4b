//go:build !linux

package bbolt

// unmapPages does nothing off Linux: the data file stays mapped.
func unmapPages(uintptr, int64) {}
