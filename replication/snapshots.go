package replication

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/strata-kv/strata/engine"
)

// A raft snapshot a member takes of itself holds no data: it names the
// store, whose engine already holds everything applied up to the
// snapshot's index (the FSM syncs the engine before raft may truncate its
// log), as etcd's .snap files name its backend database. Copying the store
// into every snapshot cost a full copy of the keyspace per snapshot on disk
// (--max-snapshots of them) and in writes. The copy is made only when a
// leader sends a snapshot to a follower that fell behind its log: raft opens
// the snapshot and gets a dump of the store as it is then (which may hold
// entries past the snapshot's index; the follower skips them when they are
// replayed, as it skips any entry its store already holds). A snapshot a
// follower receives is a dump and is kept as one.
//
// The reference is the snapshot's whole state file:
//
//	"strata-snapshot-ref/1\n" "applied-index " decimal "\n"
const snapshotRefMagic = "strata-snapshot-ref/1\n"

// ErrStoreBehindSnapshot is returned by Open for a member whose store is
// behind its newest raft snapshot when that snapshot names the store
// instead of holding data: the data directory was lost or replaced, and
// the entries up to the snapshot are neither in the store nor in the log.
// As etcd refuses to start without its backend database, the member does
// not start; restore the data directory from a backup, or remove the member
// and add it back with an empty directory.
var ErrStoreBehindSnapshot = errors.New("replication: the store is behind the newest raft snapshot, which holds no data of its own")

// writeSnapshotRef writes a reference to the store at applied index to w.
func writeSnapshotRef(w io.Writer, applied uint64) error {
	_, err := io.WriteString(w, snapshotRefMagic+"applied-index "+strconv.FormatUint(applied, 10)+"\n")
	return err
}

// isSnapshotRef reports whether a snapshot state starting with head is a
// reference.
func isSnapshotRef(head []byte) bool {
	return bytes.HasPrefix(head, []byte(snapshotRefMagic))
}

// snapshotStore is raft's FileSnapshotStore with references expanded into
// dumps when a snapshot is opened, and dumps dropped once a newer reference
// covers them.
type snapshotStore struct {
	*raft.FileSnapshotStore
	logger hclog.Logger
	// tmpDir holds the dumps being sent, unlinked as soon as they are
	// created, so that nothing is left of them after a crash; the
	// FileSnapshotStore keeps its snapshots in its "snapshots".
	tmpDir string
	// dump writes a dump of the store, at or past the given index, to w.
	// nil offline, where a reference cannot be opened.
	dump func(w io.Writer, atLeast uint64) error
}

// openSnapshots opens the snapshot store in a node's raft directory,
// keeping retain snapshots. dump is nil offline.
func openSnapshots(raftDir string, retain int, logger hclog.Logger, dump func(io.Writer, uint64) error) (*snapshotStore, error) {
	dir := filepath.Join(raftDir, "snapshots")
	fs, err := raft.NewFileSnapshotStoreWithLogger(dir, retain, logger)
	if err != nil {
		return nil, fmt.Errorf("replication: snapshot store: %w", err)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &snapshotStore{FileSnapshotStore: fs, logger: logger, tmpDir: dir, dump: dump}, nil
}

// Create implements raft.SnapshotStore. A reference, once complete, replaces
// the older snapshots that hold dumps (ones a leader sent): the store holds
// all they held, and keeping them would keep full copies of the keyspace
// until --max-snapshots newer snapshots pushed them out.
func (s *snapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.FileSnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	return &snapshotSink{SnapshotSink: sink, store: s, index: index}, nil
}

// snapshotSink notes whether what it writes is a reference.
type snapshotSink struct {
	raft.SnapshotSink
	store *snapshotStore
	index uint64
	head  []byte // the first bytes written, up to the reference's magic
}

func (k *snapshotSink) Write(p []byte) (int, error) {
	if n := len(snapshotRefMagic) - len(k.head); n > 0 {
		k.head = append(k.head, p[:min(n, len(p))]...)
	}
	return k.SnapshotSink.Write(p)
}

func (k *snapshotSink) Close() error {
	if err := k.SnapshotSink.Close(); err != nil {
		return err
	}
	if isSnapshotRef(k.head) {
		k.store.dropDumps(k.ID(), k.index)
	}
	return nil
}

// dropDumps removes the snapshots at or below index, but keep, that hold
// dumps. Best effort: a snapshot it cannot read or remove is left (and
// logged), as the FileSnapshotStore's own reaping leaves one.
func (s *snapshotStore) dropDumps(keep string, index uint64) {
	metas, err := s.List()
	if err != nil {
		s.logger.Warn("failed to list snapshots", "error", err)
		return
	}
	for _, m := range metas {
		if m.ID == keep || m.Index > index {
			continue
		}
		dir := filepath.Join(s.tmpDir, "snapshots", m.ID)
		head := make([]byte, len(snapshotRefMagic))
		f, err := os.Open(filepath.Join(dir, "state.bin"))
		if err != nil {
			continue
		}
		n, _ := io.ReadFull(f, head)
		f.Close()
		if isSnapshotRef(head[:n]) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			s.logger.Warn("failed to remove a snapshot holding a dump", "path", dir, "error", err)
			continue
		}
		s.logger.Info("removed a snapshot holding a dump, covered by a newer one naming the store", "id", m.ID, "covered-by", keep)
	}
}

// Open implements raft.SnapshotStore. A snapshot holding a dump is returned
// as it is; a reference is returned as a dump of the store as it is now,
// written to a temporary file first: raft sends a snapshot's size ahead of
// its data.
func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.FileSnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(rc)
	head, _ := br.Peek(len(snapshotRefMagic))
	if !isSnapshotRef(head) {
		return meta, readCloser{br, rc}, nil
	}
	rc.Close()
	if s.dump == nil {
		return nil, nil, fmt.Errorf("replication: open snapshot %s: it names a store, and none is open", id)
	}
	f, err := os.CreateTemp(s.tmpDir, "send-*.dump")
	if err != nil {
		return nil, nil, fmt.Errorf("replication: open snapshot %s: %w", id, err)
	}
	os.Remove(f.Name())
	size, err := s.dumpTo(f, meta.Index)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("replication: open snapshot %s: %w", id, err)
	}
	m := *meta
	m.Size = size
	return &m, f, nil
}

// dumpTo writes a dump of the store into f and rewinds it.
func (s *snapshotStore) dumpTo(f *os.File, atLeast uint64) (int64, error) {
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := s.dump(bw, atLeast); err != nil {
		return 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return size, nil
}

// isRef reports whether the snapshot id names the store.
func (s *snapshotStore) isRef(id string) (bool, error) {
	_, rc, err := s.FileSnapshotStore.Open(id)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	head := make([]byte, len(snapshotRefMagic))
	n, _ := io.ReadFull(rc, head)
	return isSnapshotRef(head[:n]), nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// dumpAtLeast writes a dump of the store to w, failing if the store is
// behind index (which a store never is behind a snapshot of itself).
func (f *fsm) dumpAtLeast(w io.Writer, index uint64) error {
	f.swapMu.RLock()
	defer f.swapMu.RUnlock()
	if f.be == nil {
		return engine.ErrClosed
	}
	if applied := f.store.AppliedIndex(); applied < index {
		return fmt.Errorf("%w: applied index %d, snapshot index %d", ErrStoreBehindSnapshot, applied, index)
	}
	return engine.Dump(w, f.be)
}
