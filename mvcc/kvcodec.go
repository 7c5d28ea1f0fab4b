package mvcc

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// Stored values are mvccpb.KeyValue messages in protobuf wire format,
// byte-identical to proto.Marshal (fields in number order, zero values
// left out). That keeps HashByRev equal to etcd's for the same history.
// The hand-written codec avoids reflection on the write and read paths.

// mvccpb.KeyValue field numbers.
const (
	fieldKey            protowire.Number = 1
	fieldCreateRevision protowire.Number = 2
	fieldModRevision    protowire.Number = 3
	fieldVersion        protowire.Number = 4
	fieldValue          protowire.Number = 5
	fieldLease          protowire.Number = 6
)

// kvSize returns the encoded size of a KeyValue with these fields.
func kvSize(key []byte, create, mod, ver int64, value []byte, lease int64) int {
	n := 0
	if len(key) > 0 {
		n += 1 + protowire.SizeBytes(len(key))
	}
	for _, v := range [...]int64{create, mod, ver} {
		if v != 0 {
			n += 1 + protowire.SizeVarint(uint64(v))
		}
	}
	if len(value) > 0 {
		n += 1 + protowire.SizeBytes(len(value))
	}
	if lease != 0 {
		n += 1 + protowire.SizeVarint(uint64(lease))
	}
	return n
}

// appendKV appends the encoding of a KeyValue with these fields to dst.
func appendKV(dst []byte, key []byte, create, mod, ver int64, value []byte, lease int64) []byte {
	if len(key) > 0 {
		dst = protowire.AppendTag(dst, fieldKey, protowire.BytesType)
		dst = protowire.AppendBytes(dst, key)
	}
	if create != 0 {
		dst = protowire.AppendTag(dst, fieldCreateRevision, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(create))
	}
	if mod != 0 {
		dst = protowire.AppendTag(dst, fieldModRevision, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(mod))
	}
	if ver != 0 {
		dst = protowire.AppendTag(dst, fieldVersion, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(ver))
	}
	if len(value) > 0 {
		dst = protowire.AppendTag(dst, fieldValue, protowire.BytesType)
		dst = protowire.AppendBytes(dst, value)
	}
	if lease != 0 {
		dst = protowire.AppendTag(dst, fieldLease, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(lease))
	}
	return dst
}

// encodeKV encodes kv like proto.Marshal.
func encodeKV(kv *mvccpb.KeyValue) []byte {
	n := kvSize(kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Value, kv.Lease)
	return appendKV(make([]byte, 0, n), kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Value, kv.Lease)
}

// decodeKV decodes an encoded KeyValue into kv. Key and Value alias b.
// Unknown fields are skipped.
func decodeKV(b []byte, kv *mvccpb.KeyValue) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: kv tag: %v", ErrCorrupt, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case (num == fieldKey || num == fieldValue) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("%w: kv bytes: %v", ErrCorrupt, protowire.ParseError(n))
			}
			if num == fieldKey {
				kv.Key = v
			} else {
				kv.Value = v
			}
			b = b[n:]
		case num >= fieldCreateRevision && num <= fieldLease && num != fieldValue && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return fmt.Errorf("%w: kv varint: %v", ErrCorrupt, protowire.ParseError(n))
			}
			switch num {
			case fieldCreateRevision:
				kv.CreateRevision = int64(v)
			case fieldModRevision:
				kv.ModRevision = int64(v)
			case fieldVersion:
				kv.Version = int64(v)
			case fieldLease:
				kv.Lease = int64(v)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: kv field %d: %v", ErrCorrupt, num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return nil
}

// decodeKVKey returns the key field of an encoded KeyValue, aliasing b.
func decodeKVKey(b []byte) ([]byte, error) {
	var kv mvccpb.KeyValue
	if err := decodeKV(b, &kv); err != nil {
		return nil, err
	}
	return kv.Key, nil
}
