package replication

import "github.com/strata-kv/strata/engine"

// WithBackend runs fn with the node's storage engine (for backups, defrag
// and size figures), holding it against a snapshot restore that would
// replace it. fn must not keep the engine. A long fn delays a restore.
func (n *Node) WithBackend(fn func(engine.Backend) error) error {
	n.fsm.swapMu.RLock()
	defer n.fsm.swapMu.RUnlock()
	if n.fsm.be == nil {
		return engine.ErrClosed
	}
	return fn(n.fsm.be)
}
