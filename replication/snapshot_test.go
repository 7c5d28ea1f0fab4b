package replication

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
)

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }

func openTestFSM(t *testing.T, eng engine.Engine) *fsm {
	t.Helper()
	f, err := openFSM(filepath.Join(t.TempDir(), "data"), eng, engine.Options{}, mvcc.Options{},
		slog.New(slog.DiscardHandler), auth.Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.close() })
	return f
}

// TestRestoreDuringSnapshot: raft takes a snapshot in two steps, the FSM's
// Snapshot on the FSM's goroutine and then, once its main loop has answered
// with the configuration, Persist. The main loop may meanwhile be installing
// a snapshot the leader sent, waiting for the FSM's Restore; a Restore that
// waited for the snapshot in between closed a cycle, and the member stopped
// for good: no applies, no votes, no answers to heartbeats (a three-member
// cluster then had no leader once its leader stopped). Restore goes ahead;
// the snapshot it overtook fails in Persist, and the next one succeeds.
func TestRestoreDuringSnapshot(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			// A snapshot of a store holding one key, applied at index 5.
			src := openTestFSM(t, eng)
			entry, err := encodeEntry(nil, []*pb.InternalRaftRequest{put("k", "v")})
			if err != nil {
				t.Fatal(err)
			}
			src.ApplyBatch([]*raft.Log{{Index: 5, Term: 1, Type: raft.LogCommand, Data: entry}})
			var sent memSink
			s, err := src.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Persist(&sent); err != nil {
				t.Fatal(err)
			}
			s.Release()

			f := openTestFSM(t, eng)
			pending, err := f.Snapshot() // raft now waits for its main loop
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- f.Restore(io.NopCloser(bytes.NewReader(sent.Bytes()))) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("restore: %v", err)
				}
			case <-time.After(20 * time.Second):
				pending.Release()
				<-done
				t.Fatal("Restore waited for a snapshot not yet persisted, which waits for raft's main loop, which waits for Restore")
			}
			if f.applied.get() != 5 {
				t.Fatalf("applied index %d after the restore, want 5", f.applied.get())
			}
			var got int64
			f.view(func(s *mvcc.Store) error {
				resp, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")})
				if err == nil {
					got = resp.Count
				}
				return err
			})
			if got != 1 {
				t.Fatalf("restored store has %d of its 1 key", got)
			}

			if err := pending.Persist(&memSink{}); !errors.Is(err, errStoreReplaced) {
				t.Fatalf("persist of a snapshot of the replaced store: %v, want %v", err, errStoreReplaced)
			}
			pending.Release()
			next, err := f.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			defer next.Release()
			if err := next.Persist(&memSink{}); err != nil {
				t.Fatalf("persist after the restore: %v", err)
			}
		})
	}
}
