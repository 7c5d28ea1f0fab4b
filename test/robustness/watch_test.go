package robustness

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchResp is one watch response as a watcher received it: events, or a
// progress notification at revision progress.
type watchResp struct {
	events   []*clientv3.Event
	progress int64
	at       int64 // when it was received, on the recorder's clock
}

// watcher watches the whole keyspace from revision 1 with prev_kv, as the
// apiserver's watch cache does, and starts again from the revision after
// the last it got whenever its stream ends (a member restart, a leader
// change): the events must come out as one ordered, gapless stream.
type watcher struct {
	name      string
	now       func() int64 // the recorder's clock
	cli       *clientv3.Client
	mu        sync.Mutex
	resps     []watchResp
	last      atomic.Int64 // last revision delivered
	resumes   atomic.Int64
	errs      []string
	progressN int
	cancel    context.CancelFunc
	done      chan struct{}
}

// startWatcher starts a watcher; it asks for a progress notification every
// progressEvery.
func startWatcher(name string, now func() int64, cli *clientv3.Client, progressEvery time.Duration) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{name: name, now: now, cli: cli, cancel: cancel, done: make(chan struct{})}
	wctx := clientv3.WithRequireLeader(ctx)
	var progress sync.WaitGroup
	progress.Go(func() {
		for t := time.NewTicker(progressEvery); ; {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
				_ = cli.RequestProgress(wctx)
			}
		}
	})
	go func() {
		defer close(w.done)
		defer progress.Wait()
		for ctx.Err() == nil {
			wch := cli.Watch(wctx, "", clientv3.WithPrefix(),
				clientv3.WithRev(w.last.Load()+1), clientv3.WithPrevKV())
			for resp := range wch {
				if resp.IsProgressNotify() {
					w.mu.Lock()
					w.resps = append(w.resps, watchResp{progress: resp.Header.Revision})
					w.progressN++
					w.mu.Unlock()
					continue
				}
				if err := resp.Err(); err != nil {
					w.mu.Lock()
					w.errs = append(w.errs, err.Error())
					w.mu.Unlock()
					continue
				}
				if len(resp.Events) == 0 {
					continue
				}
				w.mu.Lock()
				w.resps = append(w.resps, watchResp{events: resp.Events, at: w.now()})
				w.mu.Unlock()
				w.last.Store(resp.Events[len(resp.Events)-1].Kv.ModRevision)
			}
			w.resumes.Add(1)
		}
	}()
	return w
}

// checkLeaseExpiry checks that no key put under a lease was deleted by
// the lease's expiry before the lease's last renewal plus its TTL. The
// workload never deletes those keys itself, so each deletion of a key
// whose prev_kv has a lease is an expiry, seen no later than it happened.
func (w *watcher) checkLeaseExpiry(renewed map[clientv3.LeaseID]int64, ttl time.Duration) (expiries int, bad []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.resps {
		for _, ev := range r.events {
			if ev.Type != clientv3.EventTypeDelete || ev.PrevKv == nil || ev.PrevKv.Lease == 0 {
				continue
			}
			expiries++
			id := clientv3.LeaseID(ev.PrevKv.Lease)
			if earliest := renewed[id] + int64(ttl); r.at < earliest {
				bad = append(bad, fmt.Sprintf("%s: lease %x expired early: %q deleted at revision %d, seen %v after the start, before its last renewal (called at %v) plus its TTL %v",
					w.name, int64(id), ev.Kv.Key, ev.Kv.ModRevision, time.Duration(r.at), time.Duration(renewed[id]), ttl))
			}
		}
	}
	return expiries, bad
}

// errors returns the errors the watcher got.
func (w *watcher) errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

func (w *watcher) stop() {
	w.cancel()
	<-w.done
}

// check checks the stream against etcd's watch guarantees, the
// acknowledged writes and the lists, and returns the violations.
//   - ordered and unique: revisions increase across responses; no
//     revision is split over two responses (atomic);
//   - reliable: every revision from 2 to the last appears (every write in
//     this cluster is under the watched prefix);
//   - prev_kv is the key's previous state in the stream;
//   - every acknowledged write is in the stream at its revision;
//   - every paginated list at revision R is the stream's state at R.
func (w *watcher) check(acked []write, lists []list) (events int, bad []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	type rk struct {
		rev int64
		key string
	}
	byRevKey := map[rk]*clientv3.Event{}
	state := map[string]*mvccpb.KeyValue{}
	sort.Slice(lists, func(i, j int) bool { return lists[i].rev < lists[j].rev })
	li := 0
	checkLists := func(upto int64) {
		for ; li < len(lists) && lists[li].rev <= upto; li++ {
			if msg := compareList(lists[li], state); msg != "" {
				bad = append(bad, msg)
			}
		}
	}
	var prev, progress int64 = 1, 0
	for _, r := range w.resps {
		if len(r.events) == 0 {
			progress = max(progress, r.progress)
			continue
		}
		first := r.events[0].Kv.ModRevision
		if first <= progress {
			bad = append(bad, fmt.Sprintf("%s: event at revision %d after a progress notification at %d", w.name, first, progress))
		}
		if first <= prev && prev > 1 {
			bad = append(bad, fmt.Sprintf("%s: response starts at revision %d, not after %d (out of order, duplicate or split revision)", w.name, first, prev))
		}
		for _, ev := range r.events {
			rev := ev.Kv.ModRevision
			if rev < prev {
				bad = append(bad, fmt.Sprintf("%s: revision %d after %d", w.name, rev, prev))
			}
			if rev > prev+1 {
				bad = append(bad, fmt.Sprintf("%s: revisions %d..%d missing", w.name, prev+1, rev-1))
			}
			if rev > prev {
				checkLists(prev)
			}
			k := rk{rev, string(ev.Kv.Key)}
			if byRevKey[k] != nil {
				bad = append(bad, fmt.Sprintf("%s: key %q twice at revision %d", w.name, k.key, rev))
			}
			byRevKey[k] = ev
			old := state[k.key]
			if ev.PrevKv != nil && (old == nil || old.ModRevision != ev.PrevKv.ModRevision || string(old.Value) != string(ev.PrevKv.Value)) {
				bad = append(bad, fmt.Sprintf("%s: %q at %d: prev_kv %s@%d, the stream had %v", w.name, k.key, rev, ev.PrevKv.Value, ev.PrevKv.ModRevision, describeKV(old)))
			}
			if ev.PrevKv == nil && old != nil {
				bad = append(bad, fmt.Sprintf("%s: %q at %d: no prev_kv, the stream had %v", w.name, k.key, rev, describeKV(old)))
			}
			if ev.Type == clientv3.EventTypeDelete {
				if old == nil {
					bad = append(bad, fmt.Sprintf("%s: %q deleted at %d but absent", w.name, k.key, rev))
				}
				delete(state, k.key)
			} else {
				state[k.key] = ev.Kv
			}
			prev = max(prev, rev)
			events++
		}
	}
	checkLists(prev)
	for ; li < len(lists); li++ {
		bad = append(bad, fmt.Sprintf("list at revision %d is after the watch stream's end %d", lists[li].rev, prev))
	}
	for _, a := range acked {
		ev := byRevKey[rk{a.rev, a.key}]
		switch {
		case ev == nil:
			bad = append(bad, fmt.Sprintf("LOST WRITE: acknowledged %s of %q=%q at revision %d is not in the watch stream", map[bool]string{true: "delete", false: "put"}[a.del], a.key, a.value, a.rev))
		case a.del != (ev.Type == clientv3.EventTypeDelete) || (!a.del && string(ev.Kv.Value) != a.value):
			bad = append(bad, fmt.Sprintf("LOST WRITE: acknowledged write %q=%q (delete %v) at revision %d, the stream has %v %q", a.key, a.value, a.del, a.rev, ev.Type, ev.Kv.Value))
		}
	}
	return events, bad
}

// compareList compares a list with the stream's state at its revision.
func compareList(l list, state map[string]*mvccpb.KeyValue) string {
	var want []*mvccpb.KeyValue
	for k, kv := range state {
		if len(k) >= len(l.prefix) && k[:len(l.prefix)] == l.prefix {
			want = append(want, kv)
		}
	}
	sort.Slice(want, func(i, j int) bool { return string(want[i].Key) < string(want[j].Key) })
	same := len(want) == len(l.kvs)
	for i := 0; same && i < len(want); i++ {
		same = string(want[i].Key) == string(l.kvs[i].Key) && string(want[i].Value) == string(l.kvs[i].Value) && want[i].ModRevision == l.kvs[i].ModRevision
	}
	if same {
		return ""
	}
	return fmt.Sprintf("list of %q at revision %d: got %s, the watch stream has %s", l.prefix, l.rev, describeKVs(l.kvs), describeKVs(want))
}

func describeKV(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "nothing"
	}
	return fmt.Sprintf("%s@%d", kv.Value, kv.ModRevision)
}

func describeKVs(kvs []*mvccpb.KeyValue) string {
	s := "["
	for i, kv := range kvs {
		if i > 0 {
			s += " "
		}
		s += string(kv.Key) + "=" + describeKV(kv)
	}
	return s + "]"
}
