package engine

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// A dump is a backup stream that any engine loads: the keyspace as its
// keys and values in order, so that data moves between engines (raft
// snapshots sent between members on different engines; `strata migrate`).
//
//	"strata-dump/1\n"
//	records: uvarint(len(key)+1) key uvarint(len(value)) value, in key order
//	uvarint(0)                         end of records
//	uint64 count, uint32 crc32c        big-endian; the CRC covers every byte before it
//
// Load checks the order, the count and the checksum: a truncated or
// damaged dump fails with ErrCorruptDump, never loads as other data.
const dumpMagic = "strata-dump/1\n"

// ErrCorruptDump is returned by Load for a dump that is truncated,
// damaged or out of order.
var ErrCorruptDump = errors.New("engine: corrupt dump")

// dumpBatchBytes is the size at which Load and Copy commit a batch.
const dumpBatchBytes = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// IsDump reports whether a stream starting with head is a dump.
func IsDump(head []byte) bool { return string(head) == dumpMagic }

// DumpMagicLen is how many bytes IsDump needs.
const DumpMagicLen = len(dumpMagic)

// Dump writes a dump of be's keyspace, as of one point in time while
// writes continue, to w.
func Dump(w io.Writer, be Backend) error {
	snap, err := be.NewSnapshot()
	if err != nil {
		return fmt.Errorf("engine: dump: %w", err)
	}
	defer snap.Close()
	it, err := snap.NewIter(nil)
	if err != nil {
		return fmt.Errorf("engine: dump: %w", err)
	}
	defer it.Close()
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<16)
	bw.WriteString(dumpMagic)
	var count uint64
	var buf [binary.MaxVarintLen64]byte
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		bw.Write(buf[:binary.PutUvarint(buf[:], uint64(len(k))+1)])
		bw.Write(k)
		bw.Write(buf[:binary.PutUvarint(buf[:], uint64(len(v)))])
		if _, err := bw.Write(v); err != nil {
			return fmt.Errorf("engine: dump: %w", err)
		}
		count++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("engine: dump: %w", err)
	}
	bw.WriteByte(0)
	binary.BigEndian.PutUint64(buf[:8], count)
	bw.Write(buf[:8])
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("engine: dump: %w", err)
	}
	var tail [4]byte
	binary.BigEndian.PutUint32(tail[:], crc.Sum32())
	if _, err := w.Write(tail[:]); err != nil {
		return fmt.Errorf("engine: dump: %w", err)
	}
	return nil
}

// crcReader hashes what is read through it.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

// Load writes the keyspace of the dump r into be, which should be empty,
// and syncs it. It returns the number of keys. On an error be holds part
// of the dump: the caller discards it.
func Load(be Backend, r io.Reader) (int64, error) {
	cr := &crcReader{r: bufio.NewReaderSize(r, 1<<16), crc: crc32.New(castagnoli)}
	corrupt := func(what string, err error) (int64, error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%w: %s: truncated", ErrCorruptDump, what)
		}
		if err != nil {
			return 0, fmt.Errorf("engine: load: %s: %w", what, err)
		}
		return 0, fmt.Errorf("%w: %s", ErrCorruptDump, what)
	}
	magic := make([]byte, len(dumpMagic))
	if _, err := io.ReadFull(cr, magic); err != nil {
		return corrupt("header", err)
	}
	if !IsDump(magic) {
		return 0, fmt.Errorf("%w: not a dump", ErrBackupMismatch)
	}
	var (
		b     Batch
		count uint64
		last  []byte
	)
	readField := func(n uint64, max int) ([]byte, error) {
		if n > uint64(max) {
			return nil, fmt.Errorf("%w: field of %d bytes", ErrCorruptDump, n)
		}
		p := make([]byte, n)
		_, err := io.ReadFull(cr, p)
		return p, err
	}
	for {
		kl, err := binary.ReadUvarint(cr)
		if err != nil {
			return corrupt("record", err)
		}
		if kl == 0 {
			break
		}
		k, err := readField(kl-1, MaxKeySize)
		if err != nil {
			return corrupt("key", err)
		}
		vl, err := binary.ReadUvarint(cr)
		if err != nil {
			return corrupt("value length", err)
		}
		v, err := readField(vl, MaxValueSize)
		if err != nil {
			return corrupt("value", err)
		}
		if last != nil && string(k) <= string(last) {
			return corrupt(fmt.Sprintf("key %q after %q", k, last), nil)
		}
		last = k
		b.Set(k, v)
		count++
		if b.Size() >= dumpBatchBytes {
			if err := commitBatch(be, &b); err != nil {
				return 0, err
			}
		}
	}
	var n [8]byte
	if _, err := io.ReadFull(cr, n[:]); err != nil {
		return corrupt("count", err)
	}
	sum := cr.crc.Sum32()
	var tail [4]byte
	if _, err := io.ReadFull(cr.r, tail[:]); err != nil {
		return corrupt("checksum", err)
	}
	if got := binary.BigEndian.Uint64(n[:]); got != count {
		return corrupt(fmt.Sprintf("%d records, trailer says %d", count, got), nil)
	}
	if binary.BigEndian.Uint32(tail[:]) != sum {
		return corrupt("checksum mismatch", nil)
	}
	if err := commitBatch(be, &b); err != nil {
		return 0, err
	}
	if err := be.Sync(); err != nil {
		return 0, fmt.Errorf("engine: load: %w", err)
	}
	return int64(count), nil
}

func commitBatch(be Backend, b *Batch) error {
	if err := b.Err(); err != nil {
		return fmt.Errorf("engine: load: %w", err)
	}
	if b.Empty() {
		return nil
	}
	if err := be.Commit(b, NoSync); err != nil {
		return fmt.Errorf("engine: load: %w", err)
	}
	b.Reset()
	return nil
}

// Copy copies src's keyspace, as of one point in time, into dst, which
// must be empty and take no other writes meanwhile, and syncs dst: a dump
// without the stream. The keys go in through a SortedWriter (dst's bulk
// loader, when it has one). It returns the number of keys.
func Copy(dst, src Backend) (int64, error) {
	snap, err := src.NewSnapshot()
	if err != nil {
		return 0, fmt.Errorf("engine: copy: %w", err)
	}
	defer snap.Close()
	it, err := snap.NewIter(nil)
	if err != nil {
		return 0, fmt.Errorf("engine: copy: %w", err)
	}
	defer it.Close()
	w, err := NewSortedWriter(dst)
	if err != nil {
		return 0, fmt.Errorf("engine: copy: %w", err)
	}
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		if err := w.Set(it.Key(), it.Value()); err != nil {
			w.Abort()
			return 0, fmt.Errorf("engine: copy: %w", err)
		}
		n++
	}
	if err := it.Error(); err != nil {
		w.Abort()
		return 0, fmt.Errorf("engine: copy: %w", err)
	}
	if err := w.Finish(); err != nil {
		return 0, fmt.Errorf("engine: copy: %w", err)
	}
	return n, nil
}

// Equal reports whether two backends hold the same keyspace (as of one
// point in time each), and the first key where they differ.
func Equal(a, b Backend) (bool, []byte, error) {
	sa, err := a.NewSnapshot()
	if err != nil {
		return false, nil, err
	}
	defer sa.Close()
	sb, err := b.NewSnapshot()
	if err != nil {
		return false, nil, err
	}
	defer sb.Close()
	ia, err := sa.NewIter(nil)
	if err != nil {
		return false, nil, err
	}
	defer ia.Close()
	ib, err := sb.NewIter(nil)
	if err != nil {
		return false, nil, err
	}
	defer ib.Close()
	oa, ob := ia.First(), ib.First()
	for oa && ob {
		if string(ia.Key()) != string(ib.Key()) || string(ia.Value()) != string(ib.Value()) {
			return false, append([]byte(nil), ia.Key()...), nil
		}
		oa, ob = ia.Next(), ib.Next()
	}
	if err := ia.Error(); err != nil {
		return false, nil, err
	}
	if err := ib.Error(); err != nil {
		return false, nil, err
	}
	if oa != ob {
		if oa {
			return false, append([]byte(nil), ia.Key()...), nil
		}
		return false, append([]byte(nil), ib.Key()...), nil
	}
	return true, nil, nil
}
