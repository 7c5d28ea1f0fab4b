package replication

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
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
// cluster then had no leader once its leader stopped). Restore goes ahead,
// and the snapshot it overtook, which names the store, persists.
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
			var sent bytes.Buffer // what a leader sends: a dump of its store
			if err := src.dumpAtLeast(&sent, 5); err != nil {
				t.Fatal(err)
			}

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

			// The overtaken snapshot names the store, which holds all it did.
			if err := pending.Persist(&memSink{}); err != nil {
				t.Fatalf("persist of the snapshot the restore overtook: %v", err)
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

// TestSnapshotNamesStore: a snapshot a node takes of itself is a few bytes
// on disk whatever the store holds, and opening it (as raft does to send
// it) gives a dump of the whole store, of the size the metadata says, from
// a file that is gone from the directory already.
func TestSnapshotNamesStore(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, eng, 1, nil)
			n := c.leader()
			proposeAll(t, n, "k/", 500, 4)
			if err := n.Snapshot(); err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			raftDir := filepath.Join(c.dirs[0], "raft")
			snaps, err := openSnapshots(raftDir, 5, nil, n.fsm.dumpAtLeast)
			if err != nil {
				t.Fatal(err)
			}
			metas, err := snaps.List()
			if err != nil || len(metas) == 0 {
				t.Fatalf("snapshots: %v, %d", err, len(metas))
			}
			if metas[0].Size > 64 {
				t.Fatalf("snapshot of 500 keys takes %d bytes on disk; it should name the store", metas[0].Size)
			}
			meta, rc, err := snaps.Open(metas[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if left, _ := filepath.Glob(filepath.Join(raftDir, "snapshots", "send-*")); len(left) > 0 {
				t.Fatalf("the dump being sent is visible: %v", left)
			}
			data, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(data)) != meta.Size || !engine.IsDump(data[:engine.DumpMagicLen]) {
				t.Fatalf("opened snapshot: %d bytes, metadata says %d; dump: %v", len(data), meta.Size, engine.IsDump(data[:engine.DumpMagicLen]))
			}
			f := openTestFSM(t, eng)
			if err := f.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				t.Fatal(err)
			}
			if f.applied.get() < metas[0].Index {
				t.Fatalf("restored applied index %d, behind the snapshot's %d", f.applied.get(), metas[0].Index)
			}
			var got int64
			f.view(func(s *mvcc.Store) error {
				resp, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k/"), RangeEnd: []byte("k0"), CountOnly: true})
				if err == nil {
					got = resp.Count
				}
				return err
			})
			if got != 500 {
				t.Fatalf("restored %d of 500 keys", got)
			}
		})
	}
}

// TestReferenceDropsCoveredDumps: a snapshot that names the store replaces
// the older snapshots holding dumps (a leader sent them), and keeps the
// older references and any newer dump.
func TestReferenceDropsCoveredDumps(t *testing.T) {
	raftDir := t.TempDir()
	snaps, err := openSnapshots(raftDir, 10, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	write := func(index uint64, content string) string {
		t.Helper()
		sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		// Written in small pieces: the sink must see the magic across writes.
		for b := []byte(content); len(b) > 0; b = b[min(3, len(b)):] {
			if _, err := sink.Write(b[:min(3, len(b))]); err != nil {
				t.Fatal(err)
			}
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		return sink.ID()
	}
	var ref bytes.Buffer
	writeSnapshotRef(&ref, 10)
	dump := "strata-dump/1\n(a dump)"
	oldRef := write(10, ref.String())
	write(20, dump)
	write(30, dump)
	newRef := write(40, ref.String())
	newerDump := write(50, dump)
	// A reference at 45 names a store at or past 45: the dump at 50 stays.
	ref45 := write(45, ref.String())
	metas, err := snaps.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range metas {
		got = append(got, m.ID)
	}
	want := []string{newerDump, ref45, newRef, oldRef}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshots left %v, want %v", got, want)
	}
}
