package replication

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
)

// A member that forwards a proposal to the leader answers its caller from
// its own apply of the entry, as etcd's members do (etcd's wait registry,
// keyed by InternalRaftRequest.ID): the forwarded request carries an ID
// this member drew, and when this member applies a request with that ID
// it hands the result to the caller waiting for it. The caller so needs
// neither the leader's answer nor a second wait once it is here: its write
// is answered as soon as this member's store shows it. The leader's answer
// still reports a proposal that failed, and still carries the response, for
// an entry this member never applies itself (it restored a snapshot past
// it).

// requestIDs draws the IDs of the proposals a member forwards. They start
// at a random point, so that no other member (nor this one before a
// restart) proposes the same ID while a caller here waits for it.
type requestIDs struct{ next atomic.Uint64 }

func newRequestIDs() *requestIDs {
	ids := &requestIDs{}
	ids.next.Store(rand.Uint64())
	return ids
}

// draw returns a new ID, never 0 (a request with ID 0 is nobody's).
func (ids *requestIDs) draw() uint64 {
	for {
		if id := ids.next.Add(1); id != 0 {
			return id
		}
	}
}

// waiters are the callers waiting for requests this member forwarded, by
// request ID.
type waiters struct {
	// count is the number registered: ApplyBatch looks a request up only
	// while it is not zero.
	count atomic.Int64

	mu sync.Mutex
	m  map[uint64]chan Result
}

// register returns the channel on which the result of request id arrives
// once this member has applied it. The caller must cancel id once it
// stops waiting.
func (w *waiters) register(id uint64) <-chan Result {
	ch := make(chan Result, 1)
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[uint64]chan Result)
	}
	w.m[id] = ch
	w.mu.Unlock()
	w.count.Add(1)
	return ch
}

// cancel forgets id, answered or not.
func (w *waiters) cancel(id uint64) {
	w.mu.Lock()
	_, ok := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ok {
		w.count.Add(-1)
	}
}

// any says whether any caller waits.
func (w *waiters) any() bool { return w.count.Load() > 0 }

// trigger hands r to the caller waiting for request id, if there is one.
// It never blocks: each channel takes one result, and an ID is applied at
// most once.
func (w *waiters) trigger(id uint64, r Result) {
	w.mu.Lock()
	ch := w.m[id]
	w.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case ch <- r:
	default:
	}
}

// appliedResult is the result of a request applied with an ID, until its
// batch is committed.
type appliedResult struct {
	id  uint64
	res Result
}
