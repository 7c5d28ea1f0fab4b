package wal

import (
	"encoding/binary"
	"hash/crc32"
	"time"

	"github.com/hashicorp/raft"
)

// Record framing, shared by segment files and the stable file:
//
//	crc     uint32 LE  CRC32-C of the next 4+n bytes (len and payload)
//	len     uint32 LE  n, the payload length
//	payload [n]byte
const recordHeaderSize = 8

// Flags in a log payload (see doc.go).
const (
	flagExtensions byte = 1 << 0 // an Extensions field is present
	flagAppendedAt byte = 1 << 1 // an AppendedAt field is present
	flagCommit     byte = 1 << 2 // a commit index field is present
	knownFlags          = flagExtensions | flagAppendedAt | flagCommit
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends the framed encoding of l to dst and returns the
// extended slice. A non-zero commit is stored with the entry (see
// [Store.StageCommitIndex]). It allocates only when dst must grow.
func appendRecord(dst []byte, l *raft.Log, commit uint64) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	var flags byte
	if len(l.Extensions) > 0 {
		flags |= flagExtensions
	}
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	if commit != 0 {
		flags |= flagCommit
	}
	dst = append(dst, byte(l.Type), flags)
	if flags&flagAppendedAt != 0 {
		dst = binary.AppendVarint(dst, l.AppendedAt.Unix())
		dst = binary.AppendUvarint(dst, uint64(l.AppendedAt.Nanosecond()))
	}
	if flags&flagExtensions != 0 {
		dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
		dst = append(dst, l.Extensions...)
	}
	if flags&flagCommit != 0 {
		dst = binary.AppendUvarint(dst, commit)
	}
	dst = append(dst, l.Data...)
	return sealRecord(dst, start)
}

// sealRecord fills in the length and CRC of the record that starts at
// dst[start] and runs to the end of dst.
func sealRecord(dst []byte, start int) []byte {
	binary.LittleEndian.PutUint32(dst[start+4:], uint32(len(dst)-start-recordHeaderSize))
	binary.LittleEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// decodeRecord checks the frame at the start of b and returns its payload
// and the frame's total size. It returns errTruncated if b ends inside the
// frame and errChecksum if the CRC does not match. The payload aliases b.
func decodeRecord(b []byte) (payload []byte, size int, err error) {
	if len(b) < recordHeaderSize {
		return nil, 0, errTruncated
	}
	n := uint64(binary.LittleEndian.Uint32(b[4:]))
	if n > uint64(len(b)-recordHeaderSize) {
		return nil, 0, errTruncated
	}
	end := recordHeaderSize + int(n)
	if crc32.Checksum(b[4:end], castagnoli) != binary.LittleEndian.Uint32(b) {
		return nil, 0, errChecksum
	}
	return b[recordHeaderSize:end], end, nil
}

// decodeLog decodes a log payload into out, overwriting every field, and
// returns the commit index stored with the entry (0 if none). Data and
// Extensions alias p (capacity-limited, so appending to one cannot clobber
// the other); copy p first if it will be reused.
func decodeLog(p []byte, out *raft.Log) (commit uint64, err error) {
	var (
		i   int
		v   uint64
		ok  bool
		ext []byte
		at  time.Time
	)
	if out.Index, i, ok = uvarint(p, 0); !ok {
		return 0, errMalformed
	}
	if out.Term, i, ok = uvarint(p, i); !ok {
		return 0, errMalformed
	}
	if len(p)-i < 2 {
		return 0, errMalformed
	}
	typ, flags := p[i], p[i+1]
	i += 2
	if flags&^knownFlags != 0 {
		return 0, errMalformed
	}
	if flags&flagAppendedAt != 0 {
		sec, n := binary.Varint(p[i:])
		if n <= 0 {
			return 0, errMalformed
		}
		i += n
		if v, i, ok = uvarint(p, i); !ok || v >= 1e9 {
			return 0, errMalformed
		}
		at = time.Unix(sec, int64(v))
	}
	if flags&flagExtensions != 0 {
		if v, i, ok = uvarint(p, i); !ok || v == 0 || v > uint64(len(p)-i) {
			return 0, errMalformed
		}
		end := i + int(v)
		ext = p[i:end:end]
		i = end
	}
	if flags&flagCommit != 0 {
		if commit, i, ok = uvarint(p, i); !ok || commit == 0 {
			return 0, errMalformed
		}
	}
	out.Type = raft.LogType(typ)
	out.Extensions = ext
	out.AppendedAt = at
	out.Data = nil
	if i < len(p) {
		out.Data = p[i:len(p):len(p)]
	}
	return commit, nil
}

// uvarint reads a uvarint from p[i:] and returns it with the index after it.
func uvarint(p []byte, i int) (uint64, int, bool) {
	v, n := binary.Uvarint(p[i:])
	if n <= 0 {
		return 0, i, false
	}
	return v, i + n, true
}
