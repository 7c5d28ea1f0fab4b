package robustness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// engines are the storage engines the suite runs on.
var engines = []string{"bbolt", "pebble", "badger"}

// fault is one way of hurting the cluster; run injects it, holds it and
// heals it.
type fault struct {
	name string
	run  func(s *scenario)
}

// hold is how long a fault lasts: longer than the election timeout (1s)
// so that a lost leader is replaced.
const hold = 2 * time.Second

var faults = []fault{
	{"kill -9 leader", func(s *scenario) {
		l := s.leader()
		s.c.kill(l)
		time.Sleep(hold)
		s.c.start(l)
	}},
	{"kill -9 follower", func(s *scenario) {
		f := s.follower()
		s.c.kill(f)
		time.Sleep(hold)
		s.c.start(f)
	}},
	{"kill -9 follower past a snapshot", func(s *scenario) {
		// The leader snapshots and truncates its log while the follower
		// is down, so that it catches up by InstallSnapshot: the path of
		// hashicorp/raft#697's livelock, where a follower never catches up.
		f := s.follower()
		s.c.kill(f)
		want := s.rec.ackedN.Load() + 2*snapshotCount
		for deadline := time.Now().Add(15 * time.Second); s.rec.ackedN.Load() < want && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		s.c.start(f)
		s.waitCaughtUp(f, 30*time.Second)
	}},
	{"SIGSTOP leader", func(s *scenario) {
		l := s.leader()
		s.c.pause(l, true)
		time.Sleep(hold)
		s.c.pause(l, false)
	}},
	{"SIGSTOP follower", func(s *scenario) {
		f := s.follower()
		s.c.pause(f, true)
		time.Sleep(hold)
		s.c.pause(f, false)
	}},
	{"crash all", func(s *scenario) {
		for _, m := range s.c.members {
			s.c.kill(m)
		}
		time.Sleep(hold / 4)
		for _, m := range s.c.members {
			s.c.start(m)
		}
	}},
	{"partition leader", func(s *scenario) {
		l := s.leader()
		s.c.net.isolate(l.idx, len(s.c.members))
		time.Sleep(hold)
		s.c.net.heal(s.rnd.IntN(2) == 0)
	}},
	{"leader's messages lost one way", func(s *scenario) {
		l := s.leader()
		s.c.net.cutOneWay(l.idx, len(s.c.members))
		time.Sleep(hold)
		s.c.net.heal(s.rnd.IntN(2) == 0)
	}},
	{"partition follower", func(s *scenario) {
		f := s.follower()
		s.c.net.isolate(f.idx, len(s.c.members))
		time.Sleep(hold)
		s.c.net.heal(s.rnd.IntN(2) == 0)
	}},
	{"peer delay 100ms", func(s *scenario) {
		s.c.net.delayAll(100*time.Millisecond, len(s.c.members))
		time.Sleep(hold)
		s.c.net.heal(false)
	}},
	{"follower wiped, removed and added again", func(s *scenario) { s.replaceFollower() }},
	{"move leader", func(s *scenario) {
		l, f := s.leader(), s.follower()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cli := s.c.client("http://" + l.client)
		st, err := cli.Status(ctx, "http://"+f.client)
		if err == nil {
			_, err = cli.MoveLeader(ctx, st.Header.MemberId)
		}
		if err != nil {
			s.t.Logf("move leader %s -> %s: %v", l.name, f.name, err)
		}
		cli.Close()
	}},
	{"compact and defrag", func(s *scenario) {
		s.compact()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		for _, m := range s.c.members {
			if _, err := s.admin.Defragment(ctx, "http://"+m.client); err != nil {
				s.t.Logf("defragment %s: %v", m.name, err)
			}
		}
	}},
}

// scenario is one run of a workload against a cluster under faults.
type scenario struct {
	t      *testing.T
	c      *cluster
	rnd    *rand.Rand
	rec    *recorder
	watch  *watcher // all endpoints
	pinned *watcher // one member's endpoint only: resumes on it after its restarts
	admin  *clientv3.Client
	faults []string
	// compactKey's version, for the apiserver's compaction protocol.
	compactVersion int64
}

func (s *scenario) leader() *member { return s.c.waitLeader(30 * time.Second) }

func (s *scenario) follower() *member {
	l := s.leader()
	f := s.c.members[s.rnd.IntN(len(s.c.members))]
	for f == l {
		f = s.c.members[s.rnd.IntN(len(s.c.members))]
	}
	return f
}

// replaceFollower removes a follower, wipes its data directory and adds it
// again as a new member (a learner first, as etcd's runbook says, with a
// new peer URL and so a new member ID), then promotes it.
func (s *scenario) replaceFollower() { s.replaceMember(s.follower()) }

// replaceMember removes f, wipes it and adds it again.
func (s *scenario) replaceMember(f *member) {
	t, c := s.t, s.c
	t.Logf("replacing %s", f.name)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// By name from the member list: f may be down (a damaged data
	// directory).
	var memberID uint64
	for memberID == 0 {
		l, err := s.admin.MemberList(ctx)
		if err == nil {
			for _, m := range l.Members {
				if m.Name == f.name {
					memberID = m.ID
				}
			}
			if memberID == 0 {
				t.Fatalf("%s is not in the member list %v", f.name, l.Members)
			}
		} else if ctx.Err() != nil {
			t.Fatalf("member list: %v", err)
		}
	}
	// A membership change can fail as etcd's does while the leadership
	// moves ("leader changed", a timeout) having been applied or not: try
	// again until it is known to be done.
	for tries := 0; ; tries++ {
		_, err := s.admin.MemberRemove(ctx, memberID)
		if err == nil || (tries > 0 && errors.Is(err, rpctypes.ErrMemberNotFound)) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("remove %s: %v", f.name, err)
		}
		t.Logf("remove %s: %v; trying again", f.name, err)
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case <-f.exited: // a removed member stops, as etcd's does
	case <-time.After(20 * time.Second):
		c.dump(f)
		t.Errorf("%s still runs 20s after its removal; its goroutines:\n%s", f.name, c.logTail(f, 400))
	}
	c.kill(f)
	if err := os.RemoveAll(f.dataDir); err != nil {
		t.Fatal(err)
	}
	old := f.proxy
	p, err := c.net.listen(f.idx, f.peer)
	if err != nil {
		t.Fatal(err)
	}
	f.proxy = p
	old.ln.Close()
	var id uint64
	for tries := 0; id == 0; tries++ {
		add, err := s.admin.MemberAddAsLearner(ctx, []string{"http://" + p.addr()})
		switch {
		case err == nil:
			id = add.Member.ID
		case tries > 0 && errors.Is(err, rpctypes.ErrPeerURLExist):
			// An earlier try was applied.
			if l, lerr := s.admin.MemberList(ctx); lerr == nil {
				for _, m := range l.Members {
					if len(m.PeerURLs) > 0 && m.PeerURLs[0] == "http://"+p.addr() {
						id = m.ID
					}
				}
			}
		case ctx.Err() != nil:
			t.Fatalf("add %s again: %v", f.name, err)
		default:
			t.Logf("add %s again: %v; trying again", f.name, err)
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.initial, f.state = c.initialCluster(), "existing"
	c.start(f)
	// The learner catches up by a snapshot first; under the race
	// detector on two loaded cores that can take a while.
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer pcancel()
	var lastErr error
	for tries := 0; ; tries++ {
		_, err := s.admin.MemberPromote(pctx, id)
		if err == nil || (tries > 0 && errors.Is(err, rpctypes.ErrMemberNotLearner)) {
			break
		}
		if pctx.Err() != nil {
			if lastErr == nil {
				lastErr = err
			}
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			lst, serr := s.admin.Status(sctx, "http://"+f.client)
			scancel()
			c.dumpAll()
			t.Fatalf("promote %s: %v (last error %v; the learner's status %v, %v); the members' goroutines are in their logs", f.name, err, lastErr, lst, serr)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
}

// waitCaughtUp waits until m has applied what the leader had when it was
// called.
func (s *scenario) waitCaughtUp(m *member, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := s.admin.Get(ctx, "caught-up")
	if err != nil {
		s.t.Errorf("read: %v", err)
		return
	}
	for {
		st, err := s.admin.Status(ctx, "http://"+m.client)
		if err == nil && st.Header.Revision >= resp.Header.Revision {
			return
		}
		if ctx.Err() != nil {
			s.t.Errorf("%s has not caught up to revision %d in %v (at %v, %v): a follower that never catches up is hashicorp/raft#697's livelock", m.name, resp.Header.Revision, timeout, st, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// compact compacts as the apiserver does: a Txn on compact_rev_key's
// version elects one compactor, which then compacts. It compacts no
// further than the slowest watcher has read, so that the watchers can
// always resume.
func (s *scenario) compact() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rev := s.watch.last.Load()
	if s.pinned != nil {
		rev = min(rev, s.pinned.last.Load())
	}
	rev -= 20
	if rev < 2 {
		return
	}
	const key = "compact_rev_key"
	resp, err := s.admin.Txn(ctx).
		If(clientv3.Compare(clientv3.Version(key), "=", s.compactVersion)).
		Then(clientv3.OpPut(key, fmt.Sprint(rev))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		s.t.Logf("compact: %v", err)
		return
	}
	if !resp.Succeeded {
		s.compactVersion = resp.Responses[0].GetResponseRange().Kvs[0].Version
		return
	}
	s.compactVersion++
	if _, err := s.admin.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		s.t.Logf("compact %d: %v", rev, err)
	}
}

// waitProgress waits until the clients have had another write
// acknowledged: the cluster serves again after a fault.
func (s *scenario) waitProgress(timeout time.Duration) {
	s.t.Helper()
	start := s.rec.ackedN.Load()
	deadline := time.Now().Add(timeout)
	for s.rec.ackedN.Load() < start+5 {
		if time.Now().After(deadline) {
			// A hang: the members' goroutines go to their logs, which
			// the failed scenario saves.
			s.c.dumpAll()
			s.t.Fatalf("no write acknowledged within %v after the faults %v; the members' goroutines are in their logs", timeout, s.faults)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// longDuration is STRATA_ROBUSTNESS_LONG: how long each engine's
// scenario injects faults; 0 runs every fault once.
func longDuration(t *testing.T) time.Duration {
	v := os.Getenv("STRATA_ROBUSTNESS_LONG")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("STRATA_ROBUSTNESS_LONG=%q: %v", v, err)
	}
	return d
}

// TestRobustness runs the etcd and the Kubernetes workload on each engine,
// on a three-member cluster of strata processes, while faults are
// injected one after another, and checks the history at the end.
func TestRobustness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	long := longDuration(t)
	for i, eng := range engines {
		// The short form runs one workload per engine, in turn.
		wls := []workload{etcdWorkload, kubernetesWorkload}
		if long == 0 {
			wls = wls[i%2 : i%2+1]
		}
		for _, wl := range wls {
			t.Run(eng+"/"+wl.name, func(t *testing.T) { runScenario(t, eng, wl, long, uint64(i)) })
		}
	}
}

func runScenario(t *testing.T, eng string, wl workload, long time.Duration, seed uint64) {
	start := time.Now()
	c := newCluster(t, eng, 3)
	s := &scenario{t: t, c: c, rnd: rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano()))), rec: newRecorder(), admin: c.client()}
	s.watch = startWatcher("watch", s.rec.now, c.client(), 500*time.Millisecond)
	defer s.watch.stop()
	s.pinned = startWatcher("watch on "+c.members[0].name, s.rec.now, c.client("http://"+c.members[0].client), 300*time.Millisecond)
	defer s.pinned.stop()
	defer func() {
		if t.Failed() {
			t.Logf("failed: logs saved in %s", s.saveFailure("failed", nil, nil))
		}
	}()

	// Rounds: each uses fresh keys, so that each round's history is checked
	// on its own and stays small enough for porcupine.
	round := 0
	var checked, unknown int
	for {
		prefix := fmt.Sprintf("r%d/", round)
		stop := s.runClients(wl, prefix, 4)
		time.Sleep(500 * time.Millisecond)
		if long == 0 {
			for _, f := range faults {
				s.inject(f)
			}
		} else {
			for roundEnd := time.Now().Add(2 * time.Minute); time.Now().Before(roundEnd) && time.Since(start) < long; {
				s.inject(faults[s.rnd.IntN(len(faults))])
			}
		}
		stop()
		n, u := s.checkRound(prefix)
		checked, unknown = checked+n, unknown+u
		round++
		// A failure reported so far does not end the long form early:
		// each round has fresh keys, and the run must last its duration.
		if long == 0 || time.Since(start) >= long {
			break
		}
	}
	s.finalChecks()
	t.Logf("%s/%s: %d faults injected (%s); peer connections %d, of unknown origin %d; %d operations checked for linearizability (%d with unknown outcome), %d acknowledged writes, %d lists, watcher resumed %d times; counts %v; %v",
		eng, wl.name, len(s.faults), summarize(s.faults), c.net.conns.Load(), c.net.unknown.Load(), checked, unknown, len(s.rec.acked), len(s.rec.lists), s.watch.resumes.Load(), s.rec.counts, time.Since(start).Round(time.Millisecond))
}

// inject runs one fault and waits for the clients to make progress after it.
func (s *scenario) inject(f fault) {
	s.faults = append(s.faults, f.name)
	before := s.leader()
	start := time.Now()
	f.run(s)
	healed := time.Now()
	s.waitProgress(45 * time.Second)
	after := s.leader()
	s.t.Logf("fault %q: leader %s -> %s; injected for %v, writes again %v after healing",
		f.name, before.name, after.name, healed.Sub(start).Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
}

// runClients starts n clients running wl on keys under prefix; the
// returned function stops them and waits.
func (s *scenario) runClients(wl workload, prefix string, n int) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		w := &worker{id: i, cli: s.c.client(), rec: s.rec, rnd: rand.New(rand.NewPCG(uint64(i), s.rnd.Uint64())),
			prefix: prefix, keys: 8, seen: map[string]int64{}}
		wg.Go(func() {
			for ctx.Err() == nil {
				octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
				wl.step(octx, w)
				ocancel()
			}
		})
	}
	return func() { cancel(); wg.Wait() }
}

// checkRound reads every key of the round linearizably and checks the
// round's history with porcupine.
func (s *scenario) checkRound(prefix string) (ops, unknown int) {
	t := s.t
	w := &worker{id: 1000, cli: s.admin, rec: s.rec, seen: map[string]int64{}}
	for k := range 8 {
		key := fmt.Sprintf("%sk%d", prefix, k)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		w.get(ctx, key)
		cancel()
	}
	s.rec.mu.Lock()
	var hist []porcupine.Operation
	for _, op := range s.rec.ops {
		if strings.HasPrefix(op.Input.(kvInput).Key, prefix) {
			hist = append(hist, op)
			if op.Output.(*kvOutput) == nil {
				unknown++
			}
		}
	}
	s.rec.mu.Unlock()
	res, info := porcupine.CheckOperationsVerbose(kvModel, hist, 2*time.Minute)
	switch res {
	case porcupine.Illegal:
		dir := s.saveFailure("linearizability-"+strings.TrimSuffix(prefix, "/"), hist, &info)
		t.Errorf("history of %d operations is not linearizable; history, visualization and logs saved in %s", len(hist), dir)
	case porcupine.Unknown:
		t.Logf("porcupine timed out on %d operations: not checked", len(hist))
	}
	return len(hist), unknown
}

// finalChecks checks what holds at the end whatever the faults: the watch
// stream, every acknowledged write, revisions in real-time order, HashKV
// and the members' logs.
func (s *scenario) finalChecks() {
	t := s.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.admin.Get(ctx, "final")
	if err != nil {
		t.Fatalf("final read: %v", err)
	}
	final := resp.Header.Revision
	s.rec.mu.Lock()
	acked, lists, revs := s.rec.acked, s.rec.lists, s.rec.revs
	s.rec.mu.Unlock()
	var bad []string
	var events int
	for _, w := range []*watcher{s.watch, s.pinned} {
		if w == nil {
			continue
		}
		for w.last.Load() < final && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond)
		}
		upto := w.last.Load()
		if upto < final {
			bad = append(bad, fmt.Sprintf("%s stopped at revision %d, not %d, 30s after the end (errors %q); %s", w.name, upto, final, w.errors(), s.diagnoseWatch(w, upto, final)))
		}
		n, b := w.check(ackedUpTo(acked, upto), lists)
		events += n
		bad = append(bad, b...)
		w.mu.Lock()
		progressN := w.progressN
		w.mu.Unlock()
		t.Logf("%s: %d events, %d progress notifications, resumed %d times", w.name, n, progressN, w.resumes.Load())
	}
	s.rec.mu.Lock()
	expiries, early := s.watch.checkLeaseExpiry(s.rec.renewed, leaseTTL)
	s.rec.mu.Unlock()
	bad = append(bad, early...)
	t.Logf("leases: %d expiries checked, %d early", expiries, len(early))
	revBad := checkRevisionOrder(revs)
	bad = append(bad, revBad...)
	bad = append(bad, s.checkHashKV(ctx, final)...)
	if len(bad) > 0 {
		dir := s.saveFailure("checks", nil, nil)
		if len(revBad) > 0 {
			s.saveRevisions(ctx, dir, revs)
		}
		for i, b := range bad {
			if i == 20 {
				t.Errorf("... %d more", len(bad)-20)
				break
			}
			t.Error(b)
		}
		t.Errorf("logs saved in %s", dir)
	}
	t.Logf("watch: %d events of the watchers to revision %d checked against %d acknowledged writes and %d lists", events, final, len(acked), len(lists))
	s.c.checkLogs()
}

// ackedUpTo returns the writes at revisions up to rev.
func ackedUpTo(acked []write, rev int64) []write {
	var out []write
	for _, a := range acked {
		if a.rev <= rev {
			out = append(out, a)
		}
	}
	return out
}

// diagnoseWatch tells whether a stalled watcher's member serves a new
// watch from where it stopped, and at which revision the member is.
func (s *scenario) diagnoseWatch(w *watcher, from, final int64) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	eps := w.cli.Endpoints()
	st, err := s.admin.Status(ctx, eps[0])
	memberRev := int64(-1)
	if err == nil {
		memberRev = st.Header.Revision
	}
	var got int64
	for resp := range w.cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(from+1)) {
		if n := len(resp.Events); n > 0 {
			got = resp.Events[n-1].Kv.ModRevision
			if got >= final {
				break
			}
		}
	}
	return fmt.Sprintf("its endpoint %v is at revision %d (status error %v); a new watch there from %d got to revision %d", eps, memberRev, err, from+1, got)
}

// checkRevisionOrder checks etcd's guarantee on response header
// revisions: an operation called after another returned saw a revision at
// least as high, whichever members answered them, across restarts included.
// It holds for linearizable requests only (a serializable read may answer
// from a member that is behind): every operation the workloads record is
// linearizable (reads are not serializable; writes and txns go through
// raft). Operations that overlap in time may see revisions in any order.
func checkRevisionOrder(revs []revObs) []string {
	byRet := append([]revObs(nil), revs...)
	sort.Slice(byRet, func(i, j int) bool { return byRet[i].Ret < byRet[j].Ret })
	byCall := append([]revObs(nil), revs...)
	sort.Slice(byCall, func(i, j int) bool { return byCall[i].Call < byCall[j].Call })
	var bad []string
	j := 0
	var maxObs revObs
	for _, o := range byCall {
		for ; j < len(byRet) && byRet[j].Ret < o.Call; j++ {
			if byRet[j].Rev > maxObs.Rev {
				maxObs = byRet[j]
			}
		}
		if o.Rev < maxObs.Rev {
			bad = append(bad, fmt.Sprintf("revision went backwards: an operation called at %v saw revision %d (%s), one that returned before, at %v, saw %d (%s)",
				time.Duration(o.Call), o.Rev, o.Op, time.Duration(maxObs.Ret), maxObs.Rev, maxObs.Op))
		}
	}
	return bad
}

// saveRevisions writes every revision observation, in call order, with the
// members' IDs and names, into dir/revisions.json: the history a revision
// going backwards is found in.
func (s *scenario) saveRevisions(ctx context.Context, dir string, revs []revObs) {
	sorted := append([]revObs(nil), revs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
	members := map[string]string{}
	if l, err := s.admin.MemberList(ctx); err == nil {
		for _, m := range l.Members {
			members[fmt.Sprintf("%x", m.ID)] = m.Name
		}
	}
	b, err := json.MarshalIndent(struct {
		Start        time.Time         // the recorder's start: Call and Ret count from it
		Members      map[string]string // member ID (hex, as in the logs) -> name, at the end
		Observations []revObs
	}{s.rec.start, members, sorted}, "", " ")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "revisions.json"), b, 0o644)
	}
	if err != nil {
		s.t.Error(err)
	}
}

// checkHashKV compares every member's HashKV at revision rev.
func (s *scenario) checkHashKV(ctx context.Context, rev int64) []string {
	hashes := map[string]uint32{}
	for _, m := range s.c.members {
		for {
			h, err := s.admin.HashKV(ctx, "http://"+m.client, rev)
			if err == nil {
				hashes[m.name] = h.Hash
				break
			}
			if ctx.Err() != nil {
				return []string{fmt.Sprintf("HashKV of %s at %d: %v", m.name, rev, err)}
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, m := range s.c.members[1:] {
		if hashes[m.name] != hashes[s.c.members[0].name] {
			return []string{fmt.Sprintf("HashKV at revision %d differs: %v", rev, hashes)}
		}
	}
	return nil
}

// outDir returns the directory failures are saved in:
// $STRATA_ROBUSTNESS_OUT, or a new one under the system's temp directory
// (not the test's, which is removed).
func outDir(t *testing.T, what string) string {
	base := os.Getenv("STRATA_ROBUSTNESS_OUT")
	if base == "" {
		base = filepath.Join(os.TempDir(), "strata-robustness")
	}
	dir := filepath.Join(base, strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())+"-"+time.Now().Format("20060102T150405")+"-"+what)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// saveFailure saves the history (JSON), porcupine's visualization and the
// members' logs, and returns where.
func (s *scenario) saveFailure(what string, hist []porcupine.Operation, info *porcupine.LinearizationInfo) string {
	dir := outDir(s.t, what)
	if hist != nil {
		b, _ := json.MarshalIndent(hist, "", " ")
		if err := os.WriteFile(filepath.Join(dir, "history.json"), b, 0o644); err != nil {
			s.t.Error(err)
		}
	}
	if info != nil {
		if err := porcupine.VisualizePath(kvModel, *info, filepath.Join(dir, "history.html")); err != nil {
			s.t.Error(err)
		}
	}
	for _, m := range s.c.members {
		if b, err := os.ReadFile(m.logPath); err == nil {
			_ = os.WriteFile(filepath.Join(dir, m.name+".log"), b, 0o644)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "faults.txt"), []byte(strings.Join(s.faults, "\n")+"\n"), 0o644)
	return dir
}

func summarize(names []string) string {
	n := map[string]int{}
	var order []string
	for _, f := range names {
		if n[f] == 0 {
			order = append(order, f)
		}
		n[f]++
	}
	var parts []string
	for _, f := range order {
		parts = append(parts, fmt.Sprintf("%s ×%d", f, n[f]))
	}
	return strings.Join(parts, ", ")
}
