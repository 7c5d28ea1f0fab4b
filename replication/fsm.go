package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
)

// ErrUnsupportedRequest is the result of a request kind the FSM does not
// apply (yet).
var ErrUnsupportedRequest = errors.New("replication: unsupported request")

// An engine batch must never fail for its size: the replica would stop,
// and every replica with it, on the same entry, again after each restart.
// badger refuses a transaction past 15% of its memtable by its own estimate
// (4.8 MiB, or 52k changes, at the default 32 MiB), and every engine
// prefers moderate batches. So proposeLoop closes an entry once its
// requests reach maxEntryBytes, and ApplyBatch commits before an entry
// that would take the batch past maxBatchBytes, and after any entry that
// took it past maxBatchBytes or maxBatchChanges. A batch then holds at most
// maxBatchBytes or maxBatchChanges and one entry: at most MaxBatch (256)
// requests of about maxEntryBytes and one more request.
const (
	maxEntryBytes   = 1 << 20
	maxBatchBytes   = 2 << 20
	maxBatchChanges = 16 << 10
)

// Result is the outcome of one request applied by the FSM.
type Result struct {
	// Resp is the response message (*pb.PutResponse, *pb.TxnResponse ...).
	Resp proto.Message
	// Err is the request's own error (an mvcc sentinel such as
	// mvcc.ErrKeyNotFound); the request had no effect.
	Err error
	// Done, for a physical compaction, closes when it is on disk; Propose
	// waits for it.
	Done <-chan struct{}
	// Index is the log index of the entry the request was applied in
	// (zero when no entry applied it).
	Index uint64
}

// fsm applies committed raft entries to the MVCC store. It implements
// raft.BatchingFSM: every ApplyBatch becomes one mvcc.WriteBatch, committed
// once together with the index of its last entry (group commit). Entries at
// or below the store's applied index were applied before a restart and are
// skipped, which makes a restart replay-free and re-application harmless.
type fsm struct {
	dataDir string
	eng     engine.Engine
	engOpts engine.Options
	// storeOpts are the mvcc.Options every store is opened with.
	storeOpts mvcc.Options
	logger    *slog.Logger

	// swapMu keeps be and store alive: applies, reads, a snapshot's
	// Persist and WithBackend hold it shared, for as long as they use
	// them; Restore and close, which replace or close both, hold it
	// exclusively. Nothing else takes it exclusively: a long shared hold (a
	// defrag, a snapshot's Persist) delays only a restore.
	swapMu sync.RWMutex
	// be and store are set holding both swapMu (exclusively) and primaryMu,
	// and read holding either.
	be    engine.Backend
	store *mvcc.Store

	// applied tracks the index of the last entry the FSM has made visible.
	applied appliedIndex
	// appliedEntries and skippedEntries count entries ApplyBatch applied
	// and skipped as already applied (a restart's replay), for tests and
	// metrics.
	appliedEntries, skippedEntries atomic.Uint64
	// proposed holds the requests of the entries this node proposes, which
	// it applies as they are rather than decoded from the entry;
	// reusedEntries counts those (for tests).
	proposed      proposedEntries
	reusedEntries atomic.Uint64
	// commits counts the store commits ApplyBatch made (one per batch).
	commits atomic.Uint64
	// waiters are the callers of requests this member forwarded, waiting
	// for it to apply them (waiters.go).
	waiters waiters
	// restores counts snapshots restored into the store.
	restores atomic.Uint64
	// warnApply is the apply time above which a request is logged and
	// counted in slowApplies.
	warnApply   time.Duration
	slowApplies atomic.Uint64

	// primaryMu orders promotions and demotions of the store: setPrimary
	// and setStore hold it, so every store made current sees the latest
	// setPrimary and every setPrimary reaches the current store. primary and
	// extend record whether the store keeps lease clocks (this node leads),
	// so that a store reopened by Restore is promoted too.
	primaryMu sync.Mutex
	primary   bool
	extend    time.Duration

	// alarms is the applied alarm list, reloaded with the store.
	alarms alarms
	// auth is the applied auth store, reloaded with the store.
	auth *auth.Store
	// index is the raft index of the entry being applied (simple tokens
	// carry it); only ApplyBatch's goroutine uses it.
	index uint64

	// onCommit, if not nil, observes each engine commit's duration.
	onCommit func(time.Duration)
	// onFail, if not nil, is told of an engine failure the FSM cannot go
	// on after (Config.OnApplyFailure).
	onFail func(error)
}

// setPrimary promotes (with extend) or demotes the store's lessor. It does
// not wait for the store's holders (a defrag, a snapshot): only for a store
// being replaced to be made current, which setStore does under primaryMu.
func (f *fsm) setPrimary(primary bool, extend time.Duration) {
	f.primaryMu.Lock()
	defer f.primaryMu.Unlock()
	f.primary, f.extend = primary, extend
	if f.store == nil {
		return
	}
	if primary {
		f.store.Promote(extend)
	} else {
		f.store.Demote()
	}
}

var (
	_ raft.BatchingFSM = (*fsm)(nil)
)

func openFSM(dataDir string, eng engine.Engine, engOpts engine.Options, storeOpts mvcc.Options, logger *slog.Logger, authOpts auth.Options, verify bool) (*fsm, error) {
	if err := finishRestore(dataDir); err != nil {
		return nil, err
	}
	storeOpts.Logger = logger
	f := &fsm{dataDir: dataDir, eng: eng, engOpts: engOpts, storeOpts: storeOpts, logger: logger}
	authOpts.WaitIndex = f.applied.wait
	var err error
	if f.auth, err = auth.NewStore(authOpts); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := f.open(verify); err != nil {
		f.auth.Close()
		return nil, err
	}
	f.applied.set(f.store.AppliedIndex())
	return f, nil
}

// open opens the engine and the store on it; with verify, the engine
// checks its files whole first (engine.Options.Verify).
func (f *fsm) open(verify bool) error {
	opts := f.engOpts
	opts.Verify = verify
	start := time.Now()
	be, err := f.eng.Open(f.dataDir, opts)
	if err != nil {
		return fmt.Errorf("replication: open %s engine: %w", f.eng.Name, err)
	}
	if verify {
		f.logger.Info("verified the engine's files", "backend", f.eng.Name, "took", time.Since(start))
	}
	st, err := mvcc.Open(be, f.storeOpts.Clone())
	if err != nil {
		be.Close()
		return fmt.Errorf("replication: open store: %w", err)
	}
	if err := f.alarms.load(st); err != nil {
		st.Close()
		be.Close()
		return err
	}
	if err := f.auth.Load(st); err != nil {
		st.Close()
		be.Close()
		return fmt.Errorf("replication: %w", err)
	}
	f.setStore(be, st)
	return nil
}

// setStore makes be and st current (or none, with nils), promoting st if
// this node leads. The caller holds swapMu exclusively or has not shared
// the fsm yet.
func (f *fsm) setStore(be engine.Backend, st *mvcc.Store) {
	f.primaryMu.Lock()
	defer f.primaryMu.Unlock()
	f.be, f.store = be, st
	if st != nil && f.primary {
		st.Promote(f.extend)
	}
}

func (f *fsm) close() error {
	f.swapMu.Lock()
	defer f.swapMu.Unlock()
	f.auth.Close()
	return f.closeLocked()
}

func (f *fsm) closeLocked() error {
	st, be := f.store, f.be
	if st == nil {
		return nil
	}
	// No longer current first: setPrimary must not reach a closed store.
	f.setStore(nil, nil)
	err := st.Close()
	if cerr := be.Close(); err == nil {
		err = cerr
	}
	return err
}

// Apply implements raft.FSM for a single entry.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. It returns, for each entry, a
// []Result with one element per request of a command entry, or nil for an
// entry skipped or with nothing to answer.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	f.swapMu.RLock()
	defer f.swapMu.RUnlock()
	applied := f.store.AppliedIndex()
	var w *mvcc.WriteBatch
	var last uint64
	// waited holds the results of requests a caller here waits for
	// (forwarded from here), handed over once their batch is committed.
	var waited []appliedResult
	commit := func() {
		if w == nil {
			return
		}
		// An engine failure here leaves the replica unable to follow the
		// log; continuing would make it diverge. Stop, as etcd does.
		began := time.Now()
		f.commits.Add(1)
		if err := w.Commit(last); err != nil {
			f.fail(fmt.Errorf("replication: commit applied index %d: %w", last, err))
		}
		if f.onCommit != nil {
			f.onCommit(time.Since(began))
		}
		w = nil
		f.applied.set(last)
		for _, r := range waited {
			f.waiters.trigger(r.id, r.res)
		}
		waited = waited[:0]
	}
	for i, l := range logs {
		if l.Index <= applied {
			f.skippedEntries.Add(1)
			continue
		}
		f.appliedEntries.Add(1)
		if w != nil && w.Len() > 0 && w.Size()+len(l.Data) > maxBatchBytes {
			commit() // up to the entry before this one
		}
		if w == nil {
			var err error
			if w, err = f.store.NewWriteBatch(); err != nil {
				f.fail(fmt.Errorf("replication: begin write batch: %w", err))
			}
		}
		last, f.index = l.Index, l.Index
		if l.Type != raft.LogCommand {
			// Configuration entries only move the applied index.
			continue
		}
		var err error
		reqs := f.proposed.get(l.Data)
		if reqs != nil {
			f.reusedEntries.Add(1)
		} else if reqs, err = decodeEntry(l.Data); err != nil {
			// Every replica sees the same bytes, so every replica fails the
			// same way; answer the proposer instead of stopping.
			out[i] = []Result{{Err: fmt.Errorf("index %d: %w", l.Index, err)}}
			continue
		}
		res := make([]Result, len(reqs))
		waiting := f.waiters.any()
		for j, r := range reqs {
			began := time.Now()
			res[j] = f.applyRequest(w, r)
			if took := time.Since(began); took > f.warnApply && f.warnApply > 0 {
				f.warnSlowApply(r, res[j], took)
			}
			if waiting && r.ID != 0 {
				rj := res[j]
				rj.Index = l.Index
				waited = append(waited, appliedResult{id: r.ID, res: rj})
			}
		}
		out[i] = res
		if w.Size() > maxBatchBytes || w.Len() > maxBatchChanges {
			commit()
		}
	}
	commit()
	return out
}

// fail reports an engine failure the replica cannot go on after to
// onFail, which ends the process, and panics if it returns.
func (f *fsm) fail(err error) {
	if f.onFail != nil {
		f.onFail(err)
	}
	panic(err.Error())
}

// applyRequest applies one request through its kind's entry in kinds.
// warnSlowApply logs etcd's "apply request took too long" line, with the
// request as etcd prints it (values replaced by their sizes).
func (f *fsm) warnSlowApply(r *pb.InternalRaftRequest, res Result, took time.Duration) {
	f.slowApplies.Add(1)
	attrs := []any{"took", took, "expected-duration", f.warnApply, "prefix", "",
		"request", (&pb.InternalRaftStringer{Request: r}).String()}
	if res.Err != nil {
		attrs = append(attrs, "error", res.Err)
	} else if res.Resp != nil {
		attrs = append(attrs, "response", fmt.Sprintf("size:%d", proto.Size(res.Resp)))
	}
	f.logger.Warn("apply request took too long", attrs...)
}

func (f *fsm) applyRequest(w *mvcc.WriteBatch, r *pb.InternalRaftRequest) Result {
	k, err := kindOf(r)
	if err != nil {
		return Result{Err: err}
	}
	if k.refusedCorrupt && f.alarms.corrupt.Load() {
		return Result{Err: ErrCorruptCluster}
	}
	if k.cost != nil && f.alarms.noSpace.Load() && k.cost(r) > 0 {
		return Result{Err: ErrNoSpace}
	}
	if err := f.authorize(w, k, r); err != nil {
		return Result{Err: err}
	}
	resp, done, err := k.apply(f, w, r)
	if err != nil {
		return Result{Err: err, Done: done}
	}
	return Result{Resp: resp, Done: done}
}

// Snapshot implements raft.FSM. The snapshot names the store rather than
// copying it (snapshots.go): the engine is synced, so that everything
// applied so far is on disk before raft truncates its log up to the
// snapshot (the FSM's commits skip fsync; the log is the durable copy).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.swapMu.RLock()
	defer f.swapMu.RUnlock()
	if f.be == nil {
		return nil, engine.ErrClosed
	}
	if err := f.be.Sync(); err != nil {
		return nil, fmt.Errorf("replication: sync engine before snapshot: %w", err)
	}
	return fsmSnapshot{applied: f.store.AppliedIndex()}, nil
}

// fsmSnapshot is a reference to the store at an applied index.
type fsmSnapshot struct{ applied uint64 }

// Persist writes the reference.
func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshotRef(sink, s.applied); err != nil {
		sink.Cancel()
		return fmt.Errorf("replication: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot; the snapshot holds nothing.
func (fsmSnapshot) Release() {}

// Restore implements raft.FSM: it replaces the data with a snapshot's. The
// backup is restored beside the data directory and renamed over it, so a
// crash leaves either the old or the new data (finishRestore completes an
// interrupted swap at the next open).
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.swapMu.Lock()
	defer f.swapMu.Unlock()
	tmp := f.dataDir + ".restore"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("replication: restore: %w", err)
	}
	if err := f.restoreInto(tmp, rc); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("replication: restore snapshot: %w", err)
	}
	if err := f.closeLocked(); err != nil {
		return fmt.Errorf("replication: restore: close store: %w", err)
	}
	old := f.dataDir + ".old"
	if err := os.Rename(f.dataDir, old); err != nil {
		return fmt.Errorf("replication: restore: %w", err)
	}
	if err := os.Rename(tmp, f.dataDir); err != nil {
		return fmt.Errorf("replication: restore: %w", err)
	}
	if err := engine.SyncDir(filepath.Dir(f.dataDir)); err != nil {
		return fmt.Errorf("replication: restore: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("replication: restore: %w", err)
	}
	if err := f.open(false); err != nil { // just written whole
		return err
	}
	f.applied.reset(f.store.AppliedIndex())
	f.restores.Add(1)
	f.logger.Info("restored snapshot", "applied-index", f.store.AppliedIndex(), "revision", f.store.Rev())
	return nil
}

// restoreInto writes a snapshot's store into the new directory dir: an
// engine dump, whichever engine wrote it, or (snapshots taken before
// dumps) this engine's own backup.
func (f *fsm) restoreInto(dir string, r io.Reader) error {
	br := bufio.NewReader(r)
	head, _ := br.Peek(max(engine.DumpMagicLen, len(snapshotRefMagic)))
	if isSnapshotRef(head) {
		// Only a store's own snapshots are references, and a store is never
		// behind them unless its directory was lost (Open refuses that).
		return ErrStoreBehindSnapshot
	}
	if !engine.IsDump(head[:min(len(head), engine.DumpMagicLen)]) {
		return f.eng.Restore(dir, br)
	}
	if err := engine.PrepareRestoreDir(dir); err != nil {
		return err
	}
	be, err := f.eng.Open(dir, f.engOpts)
	if err != nil {
		return err
	}
	if _, err := engine.Load(be, br); err != nil {
		be.Close()
		return err
	}
	return be.Close()
}

// finishRestore completes a data directory swap a crash interrupted.
func finishRestore(dataDir string) error {
	tmp, old := dataDir+".restore", dataDir+".old"
	if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(tmp); err == nil {
			// Crashed between the two renames: the restored copy is complete.
			if err := os.Rename(tmp, dataDir); err != nil {
				return fmt.Errorf("replication: finish restore: %w", err)
			}
		}
	}
	for _, d := range []string{tmp, old} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("replication: finish restore: %w", err)
		}
	}
	return nil
}

// view runs fn with the current store, holding it against a Restore.
func (f *fsm) view(fn func(*mvcc.Store) error) error {
	f.swapMu.RLock()
	defer f.swapMu.RUnlock()
	if f.store == nil {
		return engine.ErrClosed
	}
	return fn(f.store)
}

// appliedIndex is the FSM's applied index with a way to wait for it.
type appliedIndex struct {
	mu    sync.Mutex
	index uint64
	// changed is closed and replaced whenever index moves.
	changed chan struct{}
}

func (a *appliedIndex) get() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index
}

func (a *appliedIndex) set(i uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i > a.index {
		a.index = i
	}
	a.notifyLocked()
}

// reset sets the index even if it goes backwards (after a restore).
func (a *appliedIndex) reset(i uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index = i
	a.notifyLocked()
}

func (a *appliedIndex) notifyLocked() {
	if a.changed != nil {
		close(a.changed)
		a.changed = nil
	}
}

// reached says whether the index is at least i, and if not, returns a
// channel closed when it next moves.
func (a *appliedIndex) reached(i uint64) (bool, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.index >= i {
		return true, nil
	}
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	return false, a.changed
}

// wait returns once the index is at least i.
func (a *appliedIndex) wait(ctx context.Context, i uint64) error {
	for {
		a.mu.Lock()
		if a.index >= i {
			a.mu.Unlock()
			return nil
		}
		if a.changed == nil {
			a.changed = make(chan struct{})
		}
		ch := a.changed
		a.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
