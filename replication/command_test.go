package replication

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

func TestEntryRoundTrip(t *testing.T) {
	for _, reqs := range [][]*pb.InternalRaftRequest{
		nil,
		{{ID: 1, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}}},
		{
			{ID: 2, DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("b")}},
			{ID: 3, Txn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("x")}}}}}},
			{ID: 4, Compaction: &pb.CompactionRequest{Revision: 7, Physical: true}},
		},
	} {
		data, err := encodeEntry(nil, reqs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeEntry(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(reqs) {
			t.Fatalf("decoded %d requests, want %d", len(got), len(reqs))
		}
		for i := range got {
			if !proto.Equal(got[i], reqs[i]) {
				t.Fatalf("request %d: got %v, want %v", i, got[i], reqs[i])
			}
		}
	}
}

func TestDecodeEntryRejectsCorrupt(t *testing.T) {
	good, _ := encodeEntry(nil, []*pb.InternalRaftRequest{{ID: 1, Put: &pb.PutRequest{Key: []byte("k")}}})
	for name, data := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, good[1:]...),
		"truncated":   good[:len(good)-1],
		"trailing":    append(append([]byte{}, good...), 0),
		"huge count":  {entryVersion, 0xff, 0xff, 0x03},
		"huge length": {entryVersion, 1, 0xff, 0xff, 0x03},
	} {
		if _, err := decodeEntry(data); !errors.Is(err, ErrCorruptEntry) {
			t.Errorf("%s: err = %v, want ErrCorruptEntry", name, err)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	good, _ := encodeEntry(nil, []*pb.InternalRaftRequest{{ID: 1, Put: &pb.PutRequest{Key: []byte("k")}}})
	f.Add(good)
	f.Add([]byte{entryVersion, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, err := decodeEntry(data)
		if err != nil {
			return
		}
		again, err := encodeEntry(nil, reqs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeEntry(again); err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
	})
}
