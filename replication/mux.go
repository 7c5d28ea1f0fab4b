package replication

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/strata-kv/strata/internal/sockopt"
	"github.com/strata-kv/strata/internal/tlsutil"
)

// Connections to a node's peer port start with one byte naming the protocol
// that follows, so raft and the peer service share one port (and one
// address to configure). Any other first byte (such as the 'F' of the
// byte-coded forwarding protocol this service replaced) closes the
// connection: a member of another version fails safe.
const (
	muxRaft byte = 'R'
	muxPeer byte = 'P'
)

// Dialer opens connections to peers. Tests swap it for one that injects
// faults.
type Dialer func(addr string, timeout time.Duration) (net.Conn, error)

func tcpDial(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

// peerMux accepts connections on the peer port and hands each to raft or to
// the peer service's gRPC server according to its first byte.
type peerMux struct {
	ln        net.Listener
	advertise net.Addr
	dial      Dialer
	srv       *grpc.Server
	// serverTLS and clientTLS, if set, wrap accepted and dialed
	// connections in TLS; the protocol byte follows the handshake.
	serverTLS, clientTLS *tls.Config
	// book and metrics, when metrics is set, count the traffic of every
	// peer connection (see peerstats.go).
	book    *peerBook
	metrics PeerMetrics
	// checkSAN refuses a TLS peer whose certificate does not name the
	// address it connects from (tlsutil.CheckClientSAN).
	checkSAN bool

	raftc chan net.Conn
	peerc chan net.Conn
	stopc chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func listenPeers(bind, advertise string, dial Dialer, serverTLS, clientTLS *tls.Config, so sockopt.Options) (*peerMux, error) {
	ln, err := sockopt.Listen(bind, so)
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
		ln: ln, advertise: adv, dial: dial, serverTLS: serverTLS, clientTLS: clientTLS,
		raftc: make(chan net.Conn), peerc: make(chan net.Conn), stopc: make(chan struct{}),
	}, nil
}

// start begins accepting; srv serves the peer service's connections until
// close stops it.
func (m *peerMux) start(srv *grpc.Server) {
	m.srv = srv
	m.wg.Add(2)
	go m.acceptLoop()
	go func() {
		defer m.wg.Done()
		srv.Serve(peerListener{m}) // returns once the mux closes
	}()
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
	if m.serverTLS != nil {
		// A peer without a certificate the configuration accepts fails
		// the handshake.
		tc := tls.Server(c, m.serverTLS)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := tc.HandshakeContext(ctx)
		if err == nil && m.checkSAN {
			if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
				err = tlsutil.CheckClientSAN(ctx, certs[0], c.RemoteAddr().String())
			}
		}
		cancel()
		if err != nil {
			c.Close()
			return
		}
		c = tc
	}
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	if m.metrics != nil {
		c = &countingConn{Conn: c, c: m.metrics.ForPeer(m.book.accepted(c.RemoteAddr()))}
	}
	switch b[0] {
	case muxRaft:
		select {
		case m.raftc <- c:
		case <-m.stopc:
			c.Close()
		}
	case muxPeer:
		select {
		case m.peerc <- c:
		case <-m.stopc:
			c.Close()
		}
	default:
		c.Close()
	}
}

// close stops accepting, stops the peer service and waits.
func (m *peerMux) close() error {
	var err error
	m.once.Do(func() {
		close(m.stopc)
		err = m.ln.Close()
		if m.srv != nil {
			m.srv.Stop()
		}
		m.wg.Wait()
	})
	return err
}

// dialProto opens a connection to a peer and announces proto.
func (m *peerMux) dialProto(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	c, err := m.dial(addr, timeout)
	var pc *PeerCounters
	if m.metrics != nil {
		counters := m.metrics.ForPeer(m.book.dialed(addr))
		pc = &counters
	}
	if err != nil {
		if pc != nil {
			pc.SendFailed()
		}
		return nil, err
	}
	if m.clientTLS != nil {
		cfg := m.clientTLS
		if cfg.ServerName == "" {
			// Verify the peer's certificate for the host dialed.
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(c, cfg)
		tc.SetDeadline(time.Now().Add(timeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			if pc != nil {
				pc.SendFailed()
			}
			return nil, fmt.Errorf("replication: TLS handshake with %s: %w", addr, err)
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	if pc != nil {
		// Counted above TLS, as the accepted side counts: the bytes of
		// raft and the peer service.
		c = &countingConn{Conn: c, c: *pc, outbound: true}
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

// peerListener hands the peer service's connections to its gRPC server.
type peerListener struct{ m *peerMux }

func (l peerListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.peerc:
		return c, nil
	case <-l.m.stopc:
		return nil, net.ErrClosed
	}
}

// Close does nothing: the mux owns the port.
func (l peerListener) Close() error { return nil }

func (l peerListener) Addr() net.Addr { return l.m.advertise }
