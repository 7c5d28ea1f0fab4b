package mvcc

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/engine"
)

// TestAux checks the auxiliary area: committed with the batch, invisible to
// the keyspace and its hash, kept across a reopen, deletable.
func TestAux(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine.Engine) {
		s, be := newTestStore(t, e, nil)
		if _, err := s.Put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		before, _, err := s.HashByRev(0)
		if err != nil {
			t.Fatal(err)
		}
		w, err := s.NewWriteBatch()
		if err != nil {
			t.Fatal(err)
		}
		w.SetAux([]byte("member/a"), []byte("1"))
		w.SetAux([]byte("member/b"), []byte("2"))
		w.SetAux([]byte("other"), []byte("3"))
		if got, _ := s.Aux(nil); len(got) != 0 {
			t.Fatalf("uncommitted aux records visible: %v", got)
		}
		if err := w.Commit(7); err != nil {
			t.Fatal(err)
		}
		got, err := s.Aux([]byte("member/"))
		if err != nil || len(got) != 2 || string(got["member/a"]) != "1" || string(got["member/b"]) != "2" {
			t.Fatalf("Aux(member/) = %v, %v", got, err)
		}
		resp, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
		if err != nil || resp.Count != 1 {
			t.Fatalf("aux records leak into the keyspace: %v %v", resp, err)
		}
		after, _, err := s.HashByRev(0)
		if err != nil || after.Hash != before.Hash {
			t.Fatalf("aux records change HashKV: %v -> %v (%v)", before, after, err)
		}
		if s.Rev() != 2 || s.AppliedIndex() != 7 {
			t.Fatalf("rev %d applied %d after an aux-only batch", s.Rev(), s.AppliedIndex())
		}
		s.Close()
		s2, err := Open(be, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		w, _ = s2.NewWriteBatch()
		w.DeleteAux([]byte("member/a"))
		if err := w.Commit(8); err != nil {
			t.Fatal(err)
		}
		got, err = s2.Aux(nil)
		if err != nil || len(got) != 2 || string(got["member/b"]) != "2" || string(got["other"]) != "3" {
			t.Fatalf("after reopen and delete: %v, %v", got, err)
		}
	})
}
