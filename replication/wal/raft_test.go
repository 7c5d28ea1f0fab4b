package wal

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// counterFSM counts applied commands and sums their values.
type counterFSM struct {
	mu         sync.Mutex
	count, sum uint64
}

func (f *counterFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count++
	f.sum += binary.LittleEndian.Uint64(l.Data)
	return f.count
}

func (f *counterFSM) state() (count, sum uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count, f.sum
}

func (f *counterFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], f.count)
	binary.LittleEndian.PutUint64(b[8:], f.sum)
	return counterSnapshot(b[:]), nil
}

func (f *counterFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [16]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.count, f.sum = binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])
	return nil
}

type counterSnapshot []byte

func (s counterSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (counterSnapshot) Release() {}

// raftNode is a single-node raft on our store.
type raftNode struct {
	r     *raft.Raft
	store *Store
	trans *raft.InmemTransport
	fsm   *counterFSM
}

const trailingLogs = 100

// startRaft starts the node in dir; with hold it does not start an election
// until release is called.
func startRaft(t *testing.T, dir string, hold bool) *raftNode {
	t.Helper()
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: os.Stderr})
	conf := raft.DefaultConfig()
	conf.LocalID = "n1"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	if hold {
		conf.HeartbeatTimeout = time.Hour
		conf.ElectionTimeout = time.Hour
	}
	conf.CommitTimeout = 5 * time.Millisecond
	conf.TrailingLogs = trailingLogs
	conf.SnapshotInterval = time.Hour // snapshots are taken by hand
	conf.SnapshotThreshold = 1 << 40
	conf.BatchApplyCh = true
	conf.RestoreCommittedLogs = true // exercises CommitTrackingLogStore
	conf.Logger = logger

	store := mustOpen(t, filepath.Join(dir, "wal"), &Options{SegmentSize: 32 << 10})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, logger)
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("n1")
	fsm := &counterFSM{}
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	return &raftNode{r: r, store: store, trans: trans, fsm: fsm}
}

// release lets a node started with hold elect itself.
func (n *raftNode) release(t *testing.T) {
	t.Helper()
	rc := raft.ReloadableConfig{
		TrailingLogs:      trailingLogs,
		SnapshotInterval:  time.Hour,
		SnapshotThreshold: 1 << 40,
		HeartbeatTimeout:  50 * time.Millisecond,
		ElectionTimeout:   50 * time.Millisecond,
	}
	if err := n.r.ReloadConfig(rc); err != nil {
		t.Fatal(err)
	}
}

func (n *raftNode) waitLeader(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for n.r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader, state %v", n.r.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// apply applies commands from..to-1 concurrently, so raft batches them.
func (n *raftNode) apply(t *testing.T, from, to uint64) {
	t.Helper()
	futures := make([]raft.ApplyFuture, 0, to-from)
	for i := from; i < to; i++ {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], i)
		futures = append(futures, n.r.Apply(b[:], 5*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

func (n *raftNode) shutdown(t *testing.T) {
	t.Helper()
	if err := n.r.Shutdown().Error(); err != nil {
		t.Fatal(err)
	}
	n.trans.Close()
	if err := n.store.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRaftSingleNode runs hashicorp/raft on the store: bootstrap, thousands
// of applies, a snapshot that truncates the log, more applies, then a
// restart on the same directory that must find the same log, term and state.
func TestRaftSingleNode(t *testing.T) {
	dir := t.TempDir()
	n := startRaft(t, dir, false)
	if err := n.r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{
		{ID: "n1", Address: "n1", Suffrage: raft.Voter},
	}}).Error(); err != nil {
		t.Fatal(err)
	}
	n.waitLeader(t)

	const before, after = 3000, 1000
	n.apply(t, 0, before)
	if err := n.r.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	first, last := bounds(t, n.store)
	if want := last - trailingLogs + 1; first != want {
		t.Fatalf("after snapshot: log [%d, %d], want first %d", first, last, want)
	}
	n.apply(t, before, before+after)
	if err := n.r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	wantCount, wantSum := uint64(before+after), uint64((before+after)*(before+after-1)/2)
	if c, s := n.fsm.state(); c != wantCount || s != wantSum {
		t.Fatalf("fsm count %d sum %d, want %d %d", c, s, wantCount, wantSum)
	}
	term := n.r.CurrentTerm()
	lastIndex := n.r.LastIndex()
	n.shutdown(t)

	// The store alone must show what raft wrote.
	s := mustOpen(t, filepath.Join(dir, "wal"), nil)
	if f, l := bounds(t, s); f != first || l != lastIndex {
		t.Fatalf("reopened log [%d, %d], want [%d, %d]", f, l, first, lastIndex)
	}
	if got, err := s.GetUint64(keyCurrentTerm); err != nil || got != term {
		t.Fatalf("CurrentTerm %d, %v; want %d", got, err, term)
	}
	if cand, err := s.Get(keyLastVoteCand); err != nil || string(cand) != "n1" {
		t.Fatalf("LastVoteCand %q, %v", cand, err)
	}
	commit, _ := s.GetCommitIndex()
	if commit <= last || commit > lastIndex {
		t.Fatalf("persisted commit index %d, want in (%d, %d]", commit, last, lastIndex)
	}
	var l raft.Log
	if err := s.GetLog(lastIndex, &l); err != nil || l.Term != term {
		t.Fatalf("last entry term %d, %v; want %d", l.Term, err, term)
	}
	s.Close()

	n = startRaft(t, dir, true)
	defer n.shutdown(t)
	// RestoreCommittedLogs: before any election, raft hands the FSM the
	// committed entries after the snapshot, up to the commit index we kept.
	want := before + (commit - last)
	deadline := time.Now().Add(5 * time.Second)
	for c, _ := n.fsm.state(); c < want; c, _ = n.fsm.state() {
		if time.Now().After(deadline) {
			t.Fatalf("fsm count %d as a follower after restart, want >= %d", c, want)
		}
		time.Sleep(time.Millisecond)
	}
	if st := n.r.State(); st != raft.Follower {
		t.Fatalf("state %v while held", st)
	}
	n.release(t)
	n.waitLeader(t)
	if err := n.r.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	if c, s := n.fsm.state(); c != wantCount || s != wantSum {
		t.Fatalf("after restart fsm count %d sum %d, want %d %d", c, s, wantCount, wantSum)
	}
	if got := n.r.CurrentTerm(); got <= term {
		t.Fatalf("term %d after restart, want > %d", got, term)
	}
	if f, _ := bounds(t, n.store); f != first {
		t.Fatalf("first index %d after restart, want %d", f, first)
	}
	n.apply(t, 0, 100)
}
