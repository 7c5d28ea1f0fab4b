package mvcc

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

func TestRevisionEncoding(t *testing.T) {
	for _, tc := range []struct {
		rev  revision
		tomb bool
	}{
		{revision{0, 0}, false}, {revision{1, 0}, false}, {revision{1, 1}, true},
		{revision{math.MaxInt64, math.MaxInt64}, false}, {revision{256, 3}, true},
	} {
		k := revKey(tc.rev, tc.tomb)
		if k[0] != prefixKey || k[9] != '_' {
			t.Fatalf("%v: bad key %x", tc.rev, k)
		}
		if want := revKeyLen; !tc.tomb && len(k) != want || tc.tomb && (len(k) != markedRevKeyLen || k[len(k)-1] != 't') {
			t.Fatalf("%v tomb=%v: bad length %d", tc.rev, tc.tomb, len(k))
		}
		rev, tomb, err := parseRevKey(k)
		if err != nil || rev != tc.rev || tomb != tc.tomb {
			t.Fatalf("parse(%x) = %v %v %v, want %v %v", k, rev, tomb, err, tc.rev, tc.tomb)
		}
	}
	// Byte order is revision order, and a tombstone sorts after its
	// revision but before the next one.
	prev := revKey(revision{0, 0}, false)
	for _, r := range []revision{{0, 1}, {1, 0}, {1, 1}, {1, 255}, {1, 256}, {2, 0}, {255, 0}, {256, 0}, {1 << 40, 0}} {
		for _, tomb := range []bool{false, true} {
			k := revKey(r, tomb)
			if bytes.Compare(prev, k) >= 0 {
				t.Fatalf("%x >= %x", prev, k)
			}
			prev = k
		}
	}
	for _, bad := range [][]byte{nil, {prefixKey}, append(revKey(revision{1, 1}, false), 'x'), {'m', 1, 2}} {
		if _, _, err := parseRevKey(bad); err == nil {
			t.Fatalf("parseRevKey(%x) succeeded", bad)
		}
	}
}

// TestKVCodec checks that the hand-written codec produces proto.Marshal's
// bytes and reads them back.
func TestKVCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randBytes := func() []byte {
		if rng.IntN(4) == 0 {
			return nil
		}
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	randInt := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return -rng.Int64()
		default:
			return rng.Int64N(1 << uint(rng.IntN(62)+1))
		}
	}
	for i := 0; i < 5000; i++ {
		kv := &mvccpb.KeyValue{Key: randBytes(), CreateRevision: randInt(), ModRevision: randInt(),
			Version: randInt(), Value: randBytes(), Lease: randInt()}
		want, err := proto.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeKV(kv)
		if !bytes.Equal(got, want) {
			t.Fatalf("encodeKV(%v) = %x, proto.Marshal = %x", kv, got, want)
		}
		if n := kvSize(kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Value, kv.Lease); n != len(want) {
			t.Fatalf("kvSize = %d, want %d", n, len(want))
		}
		var dec mvccpb.KeyValue
		if err := decodeKV(got, &dec); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&dec, kv) {
			t.Fatalf("decodeKV = %v, want %v", &dec, kv)
		}
		if k := encodedKey(got, len(kv.Key)); !bytes.Equal(k, kv.Key) {
			t.Fatalf("encodedKey = %q, want %q", k, kv.Key)
		}
	}
	// Unknown fields are skipped; garbage is an error.
	b := encodeKV(&mvccpb.KeyValue{Key: []byte("k"), Version: 3})
	b = append(b, 0x3a, 2, 'x', 'y') // field 7, bytes
	var dec mvccpb.KeyValue
	if err := decodeKV(b, &dec); err != nil || string(dec.Key) != "k" || dec.Version != 3 {
		t.Fatalf("decode with unknown field: %v %v", &dec, err)
	}
	if err := decodeKV([]byte{0x0a, 10, 'x'}, &dec); err == nil {
		t.Fatal("decode of truncated bytes succeeded")
	}
}
