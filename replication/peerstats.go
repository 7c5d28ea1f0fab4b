package replication

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// PeerMetrics receives a node's traffic with its peers (etcd's
// etcd_network_peer_* metrics), labelled by the peer's raft ID.
type PeerMetrics interface {
	// ForPeer returns the counters of the traffic with peer. It is called
	// once per connection, not per read or write.
	ForPeer(peer string) PeerCounters
}

// PeerCounters count the traffic with one peer. Every function must be
// set and safe for concurrent use.
type PeerCounters struct {
	Sent, Received            func(bytes int)
	SendFailed, ReceiveFailed func()
	RoundTrip                 func(time.Duration)
}

// peerProbeInterval is how often the node measures the round trip to each
// peer (etcd probes its peers every few seconds too).
const peerProbeInterval = 5 * time.Second

// peerBook maps peer addresses to raft IDs for the metrics' labels.
type peerBook struct {
	byAddr atomic.Pointer[map[string]string] // host:port -> ID
	byHost atomic.Pointer[map[string]string] // host -> ID, when only one member has it
}

func (b *peerBook) set(members []Member) {
	byAddr := map[string]string{}
	byHost := map[string]string{}
	dup := map[string]bool{}
	for _, m := range members {
		byAddr[m.Addr] = m.ID
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil {
			continue
		}
		if _, ok := byHost[host]; ok {
			dup[host] = true
		}
		byHost[host] = m.ID
	}
	for h := range dup {
		delete(byHost, h)
	}
	b.byAddr.Store(&byAddr)
	b.byHost.Store(&byHost)
}

// dialed names the peer at a dialed address: its ID, or the address until
// the configuration has it.
func (b *peerBook) dialed(addr string) string {
	if m := b.byAddr.Load(); m != nil {
		if id, ok := (*m)[addr]; ok {
			return id
		}
	}
	return addr
}

// accepted names the peer of an accepted connection: the only member on
// the remote host, or else the remote host itself (members sharing a host
// cannot be told apart by their source address).
func (b *peerBook) accepted(remote net.Addr) string {
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		return remote.String()
	}
	if m := b.byHost.Load(); m != nil {
		if id, ok := (*m)[host]; ok {
			return id
		}
	}
	return host
}

// countingConn counts a peer connection's bytes and failures.
type countingConn struct {
	net.Conn
	c        PeerCounters
	outbound bool
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.c.Received(n)
	}
	if err != nil && !c.outbound && !benignConnErr(err) {
		c.c.ReceiveFailed()
	}
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.c.Sent(n)
	}
	if err != nil && c.outbound && !benignConnErr(err) {
		c.c.SendFailed()
	}
	return n, err
}

// benignConnErr tells the errors of a connection closed on purpose.
func benignConnErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// probePeersLoop measures the round trip to every peer, refreshing the
// address book as it goes, until the node stops.
func (n *Node) probePeersLoop() {
	defer n.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-n.stopc:
			return
		case <-t.C:
		}
		next := peerProbeInterval
		members, err := n.Members()
		if err == nil {
			n.peerBook.set(members)
			for _, m := range members {
				if m.ID == n.cfg.ID {
					continue
				}
				ctx, cancel := context.WithTimeout(n.ctx, time.Second)
				began := time.Now()
				_, err := n.memberApplied(ctx, m.Addr)
				cancel()
				c := n.cfg.PeerMetrics.ForPeer(m.ID)
				if n.ctx.Err() != nil {
					return
				}
				if err != nil {
					c.SendFailed()
					next = time.Second // a member starting: look again soon
				} else {
					c.RoundTrip(time.Since(began))
				}
			}
		}
		t.Reset(next)
	}
}

func bootstrapMembers(peers []Peer) []Member {
	var out []Member
	for _, p := range peers {
		out = append(out, Member{ID: p.ID, Addr: p.Addr})
	}
	return out
}
