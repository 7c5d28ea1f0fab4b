package replication

import (
	"context"
	"sync"
	"sync/atomic"

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

	// rounds counts the rounds run, for benchmarks.
	rounds atomic.Uint64
}

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
	cfg := v.r.GetConfiguration() // lock-free: never waits on raft
	if cfg.Error() != nil {
		return false
	}
	voters, self := 0, false
	for _, s := range cfg.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || s.ID == v.self
		}
	}
	return voters == 1 && self
}

// check runs one round: it returns nil once a quorum of the latest
// configuration's voters, this node included, has accepted a heartbeat of
// the current term sent by this round.
func (v *verifier) check() error {
	v.round++
	v.rounds.Add(1)
	term := v.r.CurrentTerm()
	if v.r.State() != raft.Leader {
		return ErrNotLeader
	}
	cfg := v.r.GetConfiguration() // lock-free: never waits on raft
	if err := cfg.Error(); err != nil {
		return translateRaftError(err)
	}
	voters := map[raft.ServerID]raft.ServerAddress{}
	for _, s := range cfg.Configuration().Servers {
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
	acks, pending := 0, 0
	if _, ok := voters[v.self]; ok {
		acks++
	}
	for id, addr := range voters {
		if id == v.self {
			continue
		}
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
		select {
		case p.kick <- struct{}{}:
		default:
		}
		pending++
	}
	for acks < quorum {
		if acks+pending < quorum {
			return ErrNotLeader
		}
		select {
		case res := <-v.results:
			if res.round != v.round {
				continue
			}
			pending--
			switch {
			case res.newer:
				return ErrLeaderChanged
			case res.ok:
				acks++
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
		var resp raft.AppendEntriesResponse
		err := v.trans.AppendEntries(p.id, addr, &req, &resp)
		res := probeResult{round: round, ok: err == nil && resp.Success && resp.Term == term, newer: err == nil && resp.Term > term}
		select {
		case v.results <- res:
		case <-p.stop:
			return
		}
	}
}
