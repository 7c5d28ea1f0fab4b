package replication

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// verifier confirms, for linearizable reads, that this node still leads:
// a quorum of the voters must accept a heartbeat of its term sent after
// the read index was taken (the Raft thesis, section 6.4). Checks are
// batched: every caller waiting when a round starts is answered by that
// round.
//
// It does not use raft's VerifyLeader. In hashicorp/raft v1.8.0 a
// VerifyLeader is confirmed by any successful reply from a follower that
// arrives after the check was registered, including replies to
// AppendEntries sent before it: a leader that was paused (SIGSTOP, a long
// GC, a stalled VM) past an election and resumes finds replies to its
// pre-pause requests in its sockets, counts them, and serves a read from
// its old state while a newer leader has committed writes — a stale read,
// seen by the robustness suite as a revision going backwards. Here each
// reply counts only for the round that sent its request.
//
// A follower's forwarded calls confirm rounds too, and save their
// heartbeats: every answer to a call carries the newest round begun, and a
// call sent after such an answer arrived, with the sender's term no newer
// than the round's, tells that the sender had voted in no newer term after
// the round began: what accepting a heartbeat of the round would tell
// (peerpb.ForwardRequest). A follower that is this node's pair in a
// quorum confirms its own read indexes (Node.followerReadIndex).
type verifier struct {
	r     *raft.Raft
	trans heartbeatTransport
	self  raft.ServerID
	// leader is this node's ID and address as raft encodes them in its
	// heartbeats.
	leader []byte
	stopc  chan struct{}

	mu sync.Mutex
	// next is the round the callers waiting now are answered by, nil
	// while none waits.
	next *verifyRound
	kick chan struct{}

	// Owned by loop.
	round   uint64
	probes  map[raft.ServerID]*probe
	results chan probeResult
	workers sync.WaitGroup

	// rounds counts the rounds run and heartbeats the heartbeats sent,
	// for tests and benchmarks.
	rounds, heartbeats atomic.Uint64
	// loseHeartbeats is fault injection for tests: the heartbeats are
	// not sent and no answer comes.
	loseHeartbeats atomic.Bool
	// echoFirst: forwarded calls confirmed the last round before its
	// heartbeats could (or without them). Only then does a round hold its
	// heartbeats back for echoWait (owned by loop).
	echoFirst bool
	// started is the newest round begun (round, published): answers to
	// forwarded calls carry it (stamp).
	started atomic.Uint64

	// echoes are what forwarded calls told of their senders
	// (peerpb.ForwardRequest); a new one wakes the round on echoc.
	echoMu sync.Mutex
	echoes map[raft.ServerID]echo
	echoc  chan struct{}
}

// echo is the newest word of one member from its forwarded calls: the
// highest round stamp it had seen, its term when it sent that call, and
// when a call from it last came.
type echo struct {
	seen, term uint64
	at         time.Time
}

// A voter whose forwarded calls keep coming (the last less than
// echoRecent ago) is likely to confirm a round by its next call: while
// calls confirmed the last round first, the round waits echoWait for that
// before it sends the voter a heartbeat.
const (
	echoRecent = 2 * time.Millisecond
	echoWait   = time.Millisecond
)

// maxEchoes bounds the members whose echoes are kept: a peer naming
// members that do not exist gets no more room (those members' rounds fall
// back to heartbeats).
const maxEchoes = 64

// heartbeatTransport is what the verifier needs of raft's transport.
type heartbeatTransport interface {
	AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error
	EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte
}

// probe is the goroutine that sends one voter the verifier's heartbeats,
// one at a time: a round that starts while an older heartbeat is in flight
// gets a new one after it, never the older one's reply.
type probe struct {
	id   raft.ServerID
	kick chan struct{}
	stop chan struct{}

	mu    sync.Mutex
	addr  raft.ServerAddress
	round uint64
	term  uint64
}

// verifyRound is the answer of one round to every caller waiting for it:
// err, set before done is closed.
type verifyRound struct {
	done chan struct{}
	err  error
}

type probeResult struct {
	id    raft.ServerID
	round uint64
	// ok: the voter accepted this node as leader of the round's term.
	// newer: it knows a newer term.
	ok, newer bool
}

func (v *verifier) init(r *raft.Raft, trans heartbeatTransport, self raft.ServerID, addr raft.ServerAddress, stopc chan struct{}) {
	v.r, v.trans, v.self, v.stopc = r, trans, self, stopc
	v.leader = trans.EncodePeer(self, addr)
	v.kick = make(chan struct{}, 1)
	v.probes = map[raft.ServerID]*probe{}
	v.results = make(chan probeResult, 16)
	v.echoes = map[raft.ServerID]echo{}
	v.echoc = make(chan struct{}, 1)
}

// stamp is the round stamp of an answer to a forwarded call sent now.
func (v *verifier) stamp() uint64 { return v.started.Load() }

// echo records a forwarded call from the member id: its term when it sent
// the call and the highest round stamp it had seen.
func (v *verifier) echo(id raft.ServerID, term, seen uint64) {
	v.echoMu.Lock()
	e, ok := v.echoes[id]
	if !ok && len(v.echoes) >= maxEchoes {
		v.echoMu.Unlock()
		return
	}
	if seen >= e.seen {
		// Seen and term of one call: together they confirm up to seen.
		e.seen, e.term = seen, term
	}
	e.at = time.Now()
	v.echoes[id] = e
	v.echoMu.Unlock()
	select {
	case v.echoc <- struct{}{}:
	default:
	}
}

// echoed reports whether id's calls confirm round r of term: one sent
// after an answer stamped r or later arrived, while id was at most at term
// (and so had voted in no newer term since the round began). recent
// reports whether a call from id came less than echoRecent before now.
func (v *verifier) echoed(id raft.ServerID, r, term uint64, now time.Time) (ok, recent bool) {
	v.echoMu.Lock()
	e := v.echoes[id]
	v.echoMu.Unlock()
	return e.seen >= r && e.term != 0 && e.term <= term, now.Sub(e.at) < echoRecent
}

func (v *verifier) verify(ctx context.Context) error {
	if v.soleVoter() {
		// Nobody else can be elected while this node is the only voter of
		// the latest configuration (committed or not): no round, as etcd's
		// raft answers a single voter's ReadIndex at once.
		return nil
	}
	v.mu.Lock()
	r := v.next
	if r == nil {
		r = &verifyRound{done: make(chan struct{})}
		v.next = r
	}
	v.mu.Unlock()
	select {
	case v.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-v.stopc:
		return ErrStopped
	}
}

func (v *verifier) loop(wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		for _, p := range v.probes {
			close(p.stop)
		}
		v.workers.Wait()
	}()
	for {
		select {
		case <-v.stopc:
			return
		case <-v.results: // a reply to a finished round
			continue
		case <-v.kick:
		}
		v.mu.Lock()
		r := v.next
		v.next = nil
		v.mu.Unlock()
		if r == nil {
			continue
		}
		r.err = v.check()
		close(r.done)
	}
}

// soleVoter reports whether this node is the only voter of the latest
// configuration.
func (v *verifier) soleVoter() bool {
	return v.latestQuorum(v.self)
}

// pairQuorum reports whether this node and the voter id are a quorum of
// the latest configuration's voters: then an answer of id's own, given
// after a read index was taken, confirms it as a heartbeat round would.
func (v *verifier) pairQuorum(id raft.ServerID) bool {
	return id != v.self && v.latestQuorum(v.self, id)
}

// latestQuorum reports whether ids are a quorum of the latest
// configuration's voters (quorumOf).
func (v *verifier) latestQuorum(ids ...raft.ServerID) bool {
	return quorumOf(v.r.LatestConfiguration().Servers, ids...) // lock-free, no allocation
}

// pairQuorum reports whether the voters a and b (two of them) are a
// quorum of the voters among servers: there are two or three.
func pairQuorum(servers []raft.Server, a, b raft.ServerID) bool {
	return a != b && quorumOf(servers, a, b)
}

// quorumOf reports whether ids (distinct) are all voters among servers
// and a quorum of them.
func quorumOf(servers []raft.Server, ids ...raft.ServerID) bool {
	voters, found := 0, 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
			if slices.Contains(ids, s.ID) {
				found++
			}
		}
	}
	return found == len(ids) && found >= voters/2+1
}

// check runs one round: it returns nil once a quorum of the latest
// configuration's voters, this node included, has accepted a heartbeat of
// the current term sent by this round, or confirmed the round by a
// forwarded call (echoed).
func (v *verifier) check() error {
	v.round++
	v.rounds.Add(1)
	v.started.Store(v.round)
	term := v.r.CurrentTerm()
	if v.r.State() != raft.Leader {
		return ErrNotLeader
	}
	voters := map[raft.ServerID]raft.ServerAddress{}
	for _, s := range v.r.LatestConfiguration().Servers { // lock-free
		if s.Suffrage == raft.Voter {
			voters[s.ID] = s.Address
		}
	}
	for id, p := range v.probes {
		if _, ok := voters[id]; !ok {
			close(p.stop)
			delete(v.probes, id)
		}
	}
	quorum := len(voters)/2 + 1
	acks := 0
	if _, ok := voters[v.self]; ok {
		acks++
	}
	// waiting: the voters that may still accept this round. While calls
	// confirmed the last round first (echoFirst), those whose calls keep
	// coming (recent) are given echoWait to confirm it by a call before
	// they get a heartbeat; so are the others when the recent ones are
	// enough for a quorum.
	waiting := make(map[raft.ServerID]bool, len(voters))
	var recent, others []raft.ServerID
	now := time.Now()
	for id, addr := range voters {
		if id == v.self {
			continue
		}
		waiting[id] = true
		p := v.probes[id]
		if p == nil {
			p = &probe{id: id, kick: make(chan struct{}, 1), stop: make(chan struct{})}
			v.probes[id] = p
			v.workers.Add(1)
			go v.run(p)
		}
		p.mu.Lock()
		p.addr, p.round, p.term = addr, v.round, term
		p.mu.Unlock()
		if _, calling := v.echoed(id, v.round, term, now); calling {
			recent = append(recent, id)
		} else {
			others = append(others, id)
		}
	}
	var deferred []raft.ServerID
	switch {
	case !v.echoFirst:
		for _, id := range append(recent, others...) {
			v.probes[id].poke()
		}
	case acks+len(recent) >= quorum:
		deferred = append(recent, others...)
	default:
		deferred = recent
		for _, id := range others {
			v.probes[id].poke()
		}
	}
	var timeout <-chan time.Time
	if len(deferred) > 0 {
		t := time.NewTimer(echoWait)
		defer t.Stop()
		timeout = t.C
	}
	for acks < quorum {
		if acks+len(waiting) < quorum {
			return ErrNotLeader
		}
		select {
		case res := <-v.results:
			if res.round != v.round || !waiting[res.id] {
				continue
			}
			delete(waiting, res.id)
			switch {
			case res.newer:
				return ErrLeaderChanged
			case res.ok:
				acks++
				v.echoFirst = false
			}
		case <-v.echoc:
			now := time.Now()
			for id := range waiting {
				if ok, _ := v.echoed(id, v.round, term, now); ok {
					delete(waiting, id)
					acks++
					v.echoFirst = true
				}
			}
		case <-timeout:
			for _, id := range deferred {
				if waiting[id] {
					v.probes[id].poke()
				}
			}
		case <-v.stopc:
			return ErrStopped
		}
	}
	if v.r.CurrentTerm() != term {
		return ErrLeaderChanged
	}
	return nil
}

// poke asks p for a heartbeat of its newest round.
func (p *probe) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run sends p's voter a heartbeat per kick, for the newest round.
func (v *verifier) run(p *probe) {
	defer v.workers.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		p.mu.Lock()
		addr, round, term := p.addr, p.round, p.term
		p.mu.Unlock()
		// A heartbeat as raft's own (replication.go): the term and the
		// leader, no entries, no commit index.
		req := raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(v.self), Addr: v.leader},
			Term:      term,
			Leader:    v.leader,
		}
		if v.loseHeartbeats.Load() {
			continue
		}
		var resp raft.AppendEntriesResponse
		v.heartbeats.Add(1)
		err := v.trans.AppendEntries(p.id, addr, &req, &resp)
		res := probeResult{id: p.id, round: round, ok: err == nil && resp.Success && resp.Term == term, newer: err == nil && resp.Term > term}
		select {
		case v.results <- res:
		case <-p.stop:
			return
		}
	}
}
