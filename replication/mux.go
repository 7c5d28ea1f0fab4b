package replication

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Connections to a node's peer port start with one byte naming the protocol
// that follows, so raft and request forwarding share one port (and one
// address to configure).
const (
	muxRaft    byte = 'R'
	muxForward byte = 'F'
)

// Dialer opens connections to peers. Tests swap it for one that injects
// faults.
type Dialer func(addr string, timeout time.Duration) (net.Conn, error)

func tcpDial(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

// peerMux accepts connections on the peer port and hands each to raft or to
// the forwarding server according to its first byte.
type peerMux struct {
	ln        net.Listener
	advertise net.Addr
	dial      Dialer
	forward   func(net.Conn)

	raftc chan net.Conn
	stopc chan struct{}
	wg    sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // forwarded connections being served
	once  sync.Once
}

func listenPeers(bind, advertise string, dial Dialer) (*peerMux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("replication: listen on %s: %w", bind, err)
	}
	adv := ln.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("replication: advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	if dial == nil {
		dial = tcpDial
	}
	return &peerMux{
		ln: ln, advertise: adv, dial: dial,
		raftc: make(chan net.Conn), stopc: make(chan struct{}),
		conns: map[net.Conn]struct{}{},
	}, nil
}

// start begins accepting; forward serves forwarding connections.
func (m *peerMux) start(forward func(net.Conn)) {
	m.forward = forward
	m.wg.Add(1)
	go m.acceptLoop()
}

func (m *peerMux) acceptLoop() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.stopc:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			// A listener that fails otherwise is closed: stop.
			return
		}
		m.wg.Add(1)
		go m.route(c)
	}
}

func (m *peerMux) route(c net.Conn) {
	defer m.wg.Done()
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	switch b[0] {
	case muxRaft:
		select {
		case m.raftc <- c:
		case <-m.stopc:
			c.Close()
		}
	case muxForward:
		if !m.track(c) {
			c.Close()
			return
		}
		m.forward(c)
		m.untrack(c)
	default:
		c.Close()
	}
}

func (m *peerMux) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.stopc:
		return false
	default:
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *peerMux) untrack(c net.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
	c.Close()
}

// close stops accepting, closes served connections and waits.
func (m *peerMux) close() error {
	var err error
	m.once.Do(func() {
		m.mu.Lock()
		close(m.stopc)
		for c := range m.conns {
			c.Close()
		}
		m.mu.Unlock()
		err = m.ln.Close()
		m.wg.Wait()
	})
	return err
}

// dialProto opens a connection to a peer and announces proto.
func (m *peerMux) dialProto(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	c, err := m.dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte{proto}); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// raftStream is the raft.StreamLayer on the peer mux.
type raftStream struct{ m *peerMux }

var _ raft.StreamLayer = raftStream{}

func (s raftStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.m.raftc:
		return c, nil
	case <-s.m.stopc:
		return nil, net.ErrClosed
	}
}

// Close closes the whole peer port: raft's transport owns its lifetime.
func (s raftStream) Close() error {
	err := s.m.close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s raftStream) Addr() net.Addr { return s.m.advertise }

func (s raftStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.m.dialProto(string(addr), muxRaft, timeout)
}
