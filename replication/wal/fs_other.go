//go:build !linux

package wal

import "os"

// fdatasync flushes f. Outside Linux it is a full fsync.
func fdatasync(f *os.File) error { return f.Sync() }

// preallocate is a no-op outside Linux: segments grow as they are written.
func preallocate(*os.File, int64, int64) error { return nil }

// mapFile reads the first size bytes of f.
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	data = make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}

// dataSize returns size: Open reads whole segments here.
func dataSize(_ *os.File, size int64) int64 { return size }
