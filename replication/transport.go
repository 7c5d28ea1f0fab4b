package replication

import (
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
type tcpTransport struct {
	*raft.NetworkTransport
}

var (
	_ raft.Transport   = tcpTransport{}
	_ raft.WithPreVote = tcpTransport{}
	_ raft.WithClose   = tcpTransport{}
)

// SetHeartbeatHandler ignores the handler: see the type comment.
func (tcpTransport) SetHeartbeatHandler(func(raft.RPC)) {}

func newTCPTransport(m *peerMux, timeout time.Duration, logger hclog.Logger) tcpTransport {
	return tcpTransport{raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  raftStream{m},
		MaxPool: 3,
		Timeout: timeout,
		Logger:  logger,
	})}
}
