package replication

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// tcpTransport is raft's NetworkTransport with the heartbeat fast path
// turned off.
//
// NetworkTransport hands empty AppendEntries (heartbeats) to a handler run on
// the connection's goroutine instead of raft's main loop. That handler calls
// code raft says must only run on the main loop, and racing it against
// dispatchLogs can make logs diverge (hashicorp/raft#695, unfixed in
// v1.8.0). With SetHeartbeatHandler a no-op, heartbeats are queued to the
// main loop like every other RPC, as with raft's in-memory transport. The
// cost is that a slow disk write delays heartbeats, so election timeouts
// should leave room for an fsync.
//
// Embedding the *NetworkTransport keeps its optional interfaces
// (WithPreVote, WithClose) visible to raft, which checks for them by type
// assertion and silently disables pre-vote without WithPreVote.
//
// Close also closes every raft connection: NetworkTransport's Close closes
// neither the connections it pooled to peers nor those it accepted, whose
// goroutines would go on reading until the peer hangs up.
type tcpTransport struct {
	*raft.NetworkTransport
	accepted *connSet
}

var (
	_ raft.Transport   = tcpTransport{}
	_ raft.WithPreVote = tcpTransport{}
	_ raft.WithClose   = tcpTransport{}
)

// SetHeartbeatHandler ignores the handler: see the type comment.
func (tcpTransport) SetHeartbeatHandler(func(raft.RPC)) {}

func newTCPTransport(m *peerMux, timeout time.Duration, logger hclog.Logger) tcpTransport {
	accepted := &connSet{conns: map[*setConn]struct{}{}}
	return tcpTransport{raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  acceptTracker{raftStream{m}, accepted},
		MaxPool: 3,
		// Room for the commit indexes sent on their own while an
		// AppendEntries with entries waits for the follower's fsync (raft
		// patch 7); upstream's 2 would hold the first of them back until
		// that answer.
		MaxRPCsInFlight: 8,
		Timeout:         timeout,
		Logger:          logger,
	}), accepted}
}

// Close closes the transport, its pooled connections to peers and the
// connections it accepted.
func (t tcpTransport) Close() error {
	err := t.NetworkTransport.Close()
	t.CloseStreams()
	t.accepted.closeAll()
	return err
}

// acceptTracker records the connections a stream layer accepts.
type acceptTracker struct {
	raft.StreamLayer
	set *connSet
}

func (a acceptTracker) Accept() (net.Conn, error) {
	c, err := a.StreamLayer.Accept()
	if err != nil {
		return nil, err
	}
	return a.set.add(c), nil
}

// connSet is a set of open connections.
type connSet struct {
	mu     sync.Mutex
	conns  map[*setConn]struct{}
	closed bool
}

func (s *connSet) add(c net.Conn) net.Conn {
	sc := &setConn{Conn: c, set: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sc.closing.Store(true)
		c.Close()
		return sc
	}
	s.conns[sc] = struct{}{}
	return sc
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := s.conns
	s.conns, s.closed = nil, true
	s.mu.Unlock()
	for c := range conns {
		c.closing.Store(true)
		c.Conn.Close()
	}
}

// setConn is a connection of a connSet. Once the set closes it, a read
// fails with io.EOF, which raft's connection handler takes for a peer that
// hung up (any other error it logs).
type setConn struct {
	net.Conn
	set     *connSet
	closing atomic.Bool
}

func (c *setConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.closing.Load() {
		err = io.EOF
	}
	return n, err
}

func (c *setConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}
