package engine

import (
	"encoding/binary"
	"fmt"
)

// Kind is the kind of one batch operation.
type Kind uint8

// Batch operation kinds. The values are part of the batch representation.
const (
	// KindSet stores Value under Key.
	KindSet Kind = 1
	// KindDelete removes Key.
	KindDelete Kind = 2
	// KindDeleteRange removes every key in [Key, Value).
	KindDeleteRange Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindSet:
		return "set"
	case KindDelete:
		return "delete"
	case KindDeleteRange:
		return "delete-range"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// batchHeaderLen is the size of the count prefix of a batch representation.
const batchHeaderLen = 4

// Batch is an ordered list of writes committed atomically by
// Backend.Commit. Later operations win over earlier ones on the same key. The
// zero value is an empty batch ready for use.
//
// # Representation
//
// A batch is kept as bytes: a little-endian uint32 operation count, then for
// each operation its kind byte, uvarint key length, key, uvarint value length
// and value (for KindDeleteRange the value is the exclusive end key). Repr
// and SetRepr expose this form so a batch can travel over the wire or sit in
// a log.
//
// The methods copy their arguments: callers may reuse them after the call.
// A Batch is not safe for concurrent use.
type Batch struct {
	repr  []byte
	count uint32
	err   error
}

// Set adds a write of value under key.
func (b *Batch) Set(key, value []byte) {
	b.check(key, value)
	b.add(KindSet, key, value)
}

// Delete adds a deletion of key.
func (b *Batch) Delete(key []byte) {
	b.check(key, nil)
	b.add(KindDelete, key, nil)
}

// DeleteRange adds a deletion of every key in [start, end). It does nothing
// when start >= end.
func (b *Batch) DeleteRange(start, end []byte) {
	b.check(start, nil)
	b.check(end, nil)
	if string(start) >= string(end) {
		return
	}
	b.add(KindDeleteRange, start, end)
}

func (b *Batch) check(key, value []byte) {
	if b.err != nil {
		return
	}
	b.err = checkKV(key, value)
}

func checkKV(key, value []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(key) > MaxKeySize:
		return fmt.Errorf("%w: %d bytes", ErrKeyTooLarge, len(key))
	case len(value) > MaxValueSize:
		return fmt.Errorf("%w: %d bytes", ErrValueTooLarge, len(value))
	}
	return nil
}

func (b *Batch) add(kind Kind, key, value []byte) {
	if len(b.repr) == 0 {
		b.repr = append(b.repr[:0], 0, 0, 0, 0)
	}
	b.repr = append(b.repr, byte(kind))
	b.repr = binary.AppendUvarint(b.repr, uint64(len(key)))
	b.repr = append(b.repr, key...)
	b.repr = binary.AppendUvarint(b.repr, uint64(len(value)))
	b.repr = append(b.repr, value...)
	b.count++
	binary.LittleEndian.PutUint32(b.repr, b.count)
}

// Err returns the first invalid argument given to the batch. Commit refuses a
// batch with an error.
func (b *Batch) Err() error { return b.err }

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return int(b.count) }

// Empty reports whether the batch holds no operation.
func (b *Batch) Empty() bool { return b.count == 0 }

// Size returns the size of the batch representation in bytes.
func (b *Batch) Size() int { return len(b.repr) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.repr = b.repr[:0]
	b.count = 0
	b.err = nil
}

// Repr returns the batch representation. It aliases the batch's memory and
// is valid until the batch is next modified.
func (b *Batch) Repr() []byte {
	if len(b.repr) == 0 {
		return []byte{0, 0, 0, 0}
	}
	return b.repr
}

// SetRepr replaces the batch's contents with a copy of repr after checking
// that it decodes.
func (b *Batch) SetRepr(repr []byte) error {
	count, err := validateRepr(repr)
	if err != nil {
		return err
	}
	b.repr = append(b.repr[:0], repr...)
	b.count = count
	b.err = nil
	return nil
}

func validateRepr(repr []byte) (uint32, error) {
	if len(repr) < batchHeaderLen {
		return 0, fmt.Errorf("%w: %d byte header", ErrCorruptBatch, len(repr))
	}
	want := binary.LittleEndian.Uint32(repr)
	r := BatchReader{data: repr[batchHeaderLen:]}
	var n uint32
	for {
		kind, key, value, ok := r.Next()
		if !ok {
			break
		}
		if err := checkKV(key, value); err != nil {
			return 0, fmt.Errorf("%w: op %d: %w", ErrCorruptBatch, n, err)
		}
		if kind == KindDeleteRange {
			if err := checkKV(value, nil); err != nil {
				return 0, fmt.Errorf("%w: op %d end: %w", ErrCorruptBatch, n, err)
			}
		}
		n++
	}
	if r.err != nil {
		return 0, fmt.Errorf("%w: op %d: %w", ErrCorruptBatch, n, r.err)
	}
	if n != want {
		return 0, fmt.Errorf("%w: header says %d ops, found %d", ErrCorruptBatch, want, n)
	}
	return n, nil
}

// Reader returns a reader over the batch's operations in order.
func (b *Batch) Reader() BatchReader {
	if len(b.repr) < batchHeaderLen {
		return BatchReader{}
	}
	return BatchReader{data: b.repr[batchHeaderLen:]}
}

// BatchReader iterates over the operations of a Batch. The slices it returns
// alias the batch.
type BatchReader struct {
	data []byte
	err  error
}

// Next returns the next operation, or ok=false at the end of the batch or on
// a decoding error (see Err).
func (r *BatchReader) Next() (kind Kind, key, value []byte, ok bool) {
	if len(r.data) == 0 || r.err != nil {
		return 0, nil, nil, false
	}
	kind = Kind(r.data[0])
	if kind != KindSet && kind != KindDelete && kind != KindDeleteRange {
		r.err = fmt.Errorf("unknown kind %d", r.data[0])
		return 0, nil, nil, false
	}
	rest := r.data[1:]
	if key, rest, r.err = readBytes(rest); r.err != nil {
		return 0, nil, nil, false
	}
	if value, rest, r.err = readBytes(rest); r.err != nil {
		return 0, nil, nil, false
	}
	if kind == KindDelete && len(value) != 0 {
		r.err = fmt.Errorf("delete with a %d byte value", len(value))
		return 0, nil, nil, false
	}
	r.data = rest
	return kind, key, value, true
}

// Err returns the decoding error met by Next, if any.
func (r *BatchReader) Err() error { return r.err }

func readBytes(b []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return nil, nil, fmt.Errorf("bad length varint")
	}
	b = b[w:]
	if n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d past end (%d left)", n, len(b))
	}
	return b[:n:n], b[n:], nil
}
