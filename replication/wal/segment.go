package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"
)

const (
	segmentHeaderSize = 32
	segmentVersion    = 1
	segmentExt        = ".wal"
	segmentNameDigits = 20
)

var segmentMagic = []byte("STRATAWL")

// segment is one segment file and the in-memory index of its entries.
//
// base, path and f never change. offsets and size change only with both
// Store.wmu and Store.mu held, and are read with either.
type segment struct {
	base    uint64
	path    string
	f       *os.File
	offsets []uint32 // offsets[i] is the file offset of the record of entry base+i
	size    int64    // end of the last record; any bytes after it are zeros
}

// last is the index of the segment's last entry. The segment must not be
// empty.
func (s *segment) last() uint64 { return s.base + uint64(len(s.offsets)) - 1 }

// span returns the byte range of the record of entry idx, which must be in
// the segment.
func (s *segment) span(idx uint64) (start, end int64) {
	i := idx - s.base
	start = int64(s.offsets[i])
	end = s.size
	if i+1 < uint64(len(s.offsets)) {
		end = int64(s.offsets[i+1])
	}
	return start, end
}

func segmentName(base uint64) string {
	return fmt.Sprintf("%0*d%s", segmentNameDigits, base, segmentExt)
}

func parseSegmentName(name string) (base uint64, ok bool) {
	if len(name) != segmentNameDigits+len(segmentExt) || !strings.HasSuffix(name, segmentExt) {
		return 0, false
	}
	base, err := strconv.ParseUint(name[:segmentNameDigits], 10, 64)
	return base, err == nil && base > 0
}

// appendSegmentHeader appends a segment header for base to dst.
func appendSegmentHeader(dst []byte, base uint64) []byte {
	start := len(dst)
	dst = append(dst, segmentMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, segmentVersion)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // flags, reserved
	dst = binary.LittleEndian.AppendUint64(dst, base)
	dst = binary.LittleEndian.AppendUint32(dst, 0) // reserved
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// parseSegmentHeader returns the base index recorded in a segment header.
func parseSegmentHeader(b []byte) (uint64, error) {
	if len(b) < segmentHeaderSize {
		return 0, errTruncated
	}
	h := b[:segmentHeaderSize]
	if crc32.Checksum(h[:28], castagnoli) != binary.LittleEndian.Uint32(h[28:]) {
		return 0, errChecksum
	}
	if !bytes.Equal(h[:8], segmentMagic) {
		return 0, fmt.Errorf("%w: bad magic %q", errMalformed, h[:8])
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != segmentVersion {
		return 0, fmt.Errorf("%w: unsupported segment version %d", errMalformed, v)
	}
	return binary.LittleEndian.Uint64(h[16:]), nil
}

// scanResult is what scanSegment learnt about one segment file.
type scanResult struct {
	offsets []uint32 // record offset of each valid entry, in index order
	end     int      // end of the last valid record; 0 if the file has no valid header
	torn    bool     // non-zero bytes follow end: a torn append (tail only)
	commit  uint64   // commit index stored with the last entry that has one
}

// scanSegment validates the contents of segment file name, whose name says
// it starts at base. The entries end at the first record that does not
// decode; only zeros (preallocated space) may follow it. In the tail segment
// (tail true), non-zero bytes there that hold no valid record are a torn
// append: the scan reports torn and the caller erases them. An invalid
// record followed by a valid one is damage to data that was acknowledged,
// and is an error in any segment, as is anything but zeros after the end of
// a sealed segment. A tail segment whose header was never written (shorter
// than a header, or zeros) has end == 0: nothing in it was ever synced.
func scanSegment(name string, base uint64, data []byte, tail bool) (scanResult, error) {
	var res scanResult
	hbase, err := parseSegmentHeader(data)
	if err != nil {
		if tail && (len(data) < segmentHeaderSize || isZero(data[:segmentHeaderSize])) {
			return res, nil
		}
		return res, fmt.Errorf("%w: segment %s: header: %w", ErrCorrupt, name, err)
	}
	if hbase != base {
		return res, fmt.Errorf("%w: segment %s: header says base index %d", ErrCorrupt, name, hbase)
	}
	var l raft.Log
	off, want := segmentHeaderSize, base
	for off < len(data) {
		n, commit, err := checkEntry(data[off:], want, &l)
		if err != nil {
			if isZero(data[off:]) {
				break
			}
			if !tail {
				return res, fmt.Errorf("%w: sealed segment %s: entry %d at offset %d: %w", ErrCorrupt, name, want, off, err)
			}
			if at, idx, ok := findValidEntry(data, off+1, want); ok {
				return res, fmt.Errorf("%w: segment %s: entry %d at offset %d: %w, but entry %d at offset %d is intact",
					ErrCorrupt, name, want, off, err, idx, at)
			}
			res.torn = true
			break
		}
		if commit != 0 {
			res.commit = commit
		}
		res.offsets = append(res.offsets, uint32(off))
		off += n
		want++
	}
	res.end = off
	return res, nil
}

// checkEntry decodes the record at the start of b, which must hold entry
// want, and returns the record size and its stored commit index.
func checkEntry(b []byte, want uint64, l *raft.Log) (size int, commit uint64, err error) {
	p, size, err := decodeRecord(b)
	if err != nil {
		return 0, 0, err
	}
	if commit, err = decodeLog(p, l); err != nil {
		return 0, 0, err
	}
	if l.Index != want {
		return 0, 0, fmt.Errorf("%w: holds index %d", errMalformed, l.Index)
	}
	return size, commit, nil
}

// findValidEntry looks for a valid record holding an index >= want at any
// byte offset from `from` on.
func findValidEntry(data []byte, from int, want uint64) (at int, idx uint64, ok bool) {
	var l raft.Log
	for at = from; at+recordHeaderSize <= len(data); at++ {
		// A record header is never all zeros (its length is at least 4):
		// skip runs of zeros, such as preallocated space, quickly.
		if data[at] == 0 {
			at = max(at, nextNonZero(data, at)-recordHeaderSize+1)
			if at+recordHeaderSize > len(data) {
				break
			}
		}
		p, _, err := decodeRecord(data[at:])
		if err != nil {
			continue
		}
		if _, err := decodeLog(p, &l); err == nil && l.Index >= want {
			return at, l.Index, true
		}
	}
	return 0, 0, false
}

var zeroBlock [4096]byte

// nextNonZero returns the index of the first non-zero byte of b at or after
// from, or len(b).
func nextNonZero(b []byte, from int) int {
	i := from
	for ; i+len(zeroBlock) <= len(b) && bytes.Equal(b[i:i+len(zeroBlock)], zeroBlock[:]); i += len(zeroBlock) {
	}
	for ; i < len(b) && b[i] == 0; i++ {
	}
	return i
}

func isZero(b []byte) bool { return nextNonZero(b, 0) == len(b) }
