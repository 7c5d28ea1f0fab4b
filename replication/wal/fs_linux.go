package wal

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync flushes f's data and the metadata needed to read it back (such
// as its size), but not timestamps.
func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// preallocate allocates n bytes of f from off, extending its size; the new
// space reads as zeros. Writing into allocated space later needs no size
// change, so the fdatasync after an append does not wait for a journal
// commit. It does nothing where the filesystem cannot do it.
func preallocate(f *os.File, off, n int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, off, n)
		switch {
		case err == unix.EINTR:
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return nil
		}
		return err
	}
}

// mapFile maps the first size bytes of f read-only, for Open to scan
// without copying a mostly preallocated segment into the heap. The caller
// must call unmap and must not let the file shrink meanwhile.
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	data, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return unix.Munmap(data) }, nil
}

// dataSize returns a length after which f, of the given size, holds only
// holes or unwritten (preallocated) extents, which read as zeros; Open
// need not read them. Where the filesystem cannot tell, it returns size.
func dataSize(f *os.File, size int64) int64 {
	fd := int(f.Fd())
	end := int64(0)
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			if errors.Is(err, unix.ENXIO) {
				return end // no data after off
			}
			return size
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return size
		}
		end, off = hole, hole
	}
	return min(end, size)
}
