package mvcc

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeKV checks that decodeKV never panics and agrees with
// proto.Unmarshal on what it accepts.
func FuzzDecodeKV(f *testing.F) {
	f.Add(encodeKV(&mvccpb.KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 3, Version: 1, Value: []byte("v"), Lease: 7}))
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var got mvccpb.KeyValue
		err := decodeKV(b, &got)
		var want mvccpb.KeyValue
		perr := proto.Unmarshal(b, &want)
		want.ProtoReflect().SetUnknown(nil) // decodeKV skips unknown fields
		if err == nil && perr == nil && !proto.Equal(&got, &want) {
			t.Fatalf("decodeKV = %v, proto.Unmarshal = %v", &got, &want)
		}
	})
}

// FuzzParseRevKey checks that parseRevKey never panics and round-trips.
func FuzzParseRevKey(f *testing.F) {
	f.Add(revKey(revision{3, 1}, true))
	f.Fuzz(func(t *testing.T, b []byte) {
		rev, tomb, err := parseRevKey(b)
		if err == nil && string(revKey(rev, tomb)) != string(b) {
			t.Fatalf("parseRevKey(%x) = %v %v, which encodes differently", b, rev, tomb)
		}
	})
}

// FuzzValidateTxn checks that ValidateTxn never panics on any decodable
// request.
func FuzzValidateTxn(f *testing.F) {
	seed, _ := proto.Marshal(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "1"), opDel("a", "b"), opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opPut("a", "2")}})}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r pb.TxnRequest
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		ValidateTxn(&r, 0)
	})
}
