package server

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"time"
)

// splitListener serves gRPC and HTTP on one port without cmux: it reads
// the first bytes of each connection and hands HTTP/2 connections (they
// start with the preface "PRI * HTTP/2.0") to the gRPC server and all
// others to the HTTP server, as etcd's insecure listener does with cmux.
// A client speaking HTTP/2 without TLS for plain HTTP (rare; curl and
// Prometheus use HTTP/1.1) reaches the gRPC server, which refuses
// requests that are not gRPC.
type splitListener struct {
	l          net.Listener
	grpc, http *chanListener
	tls        *tls.Config // nil serves plain TCP
	// only, if not 0, sends every connection to one side: onlyGRPC for
	// --listen-client-urls when --listen-client-http-urls is set,
	// onlyHTTP for the latter. (A TLS connection always goes to the HTTP
	// side, where the server picks the handler.)
	only      byte
	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

// With a TLS configuration (an https URL), the listener first completes
// the TLS handshake, as etcd's TLS listener does, and hands every
// connection, a *tls.Conn, to the HTTP side: gRPC then reaches the gRPC
// server through the HTTP server (see grpcHandler), as in etcd. A client
// that fails the handshake (no certificate, an untrusted or revoked one,
// plain HTTP) is closed and never served.
//
// Values of splitListener.only.
const (
	onlyGRPC byte = 'g'
	onlyHTTP byte = 'h'
)

// sniffTimeout bounds how long a new connection may take to send its
// first bytes.
const sniffTimeout = 10 * time.Second

func newSplitListener(l net.Listener, tlsConfig *tls.Config, only byte) *splitListener {
	s := &splitListener{l: l, tls: tlsConfig, only: only, done: make(chan struct{})}
	s.grpc = newChanListener(l.Addr(), s.done)
	s.http = newChanListener(l.Addr(), s.done)
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

func (s *splitListener) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			s.close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.dispatch(c)
		}()
	}
}

func (s *splitListener) dispatch(c net.Conn) {
	if s.tls != nil {
		tc := tls.Server(c, s.tls)
		c.SetDeadline(time.Now().Add(sniffTimeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return
		}
		c.SetDeadline(time.Time{})
		s.deliver(s.http, tc)
		return
	}
	switch s.only {
	case onlyGRPC:
		s.deliver(s.grpc, c)
		return
	case onlyHTTP:
		s.deliver(s.http, c)
		return
	}
	var prefix [3]byte
	c.SetReadDeadline(time.Now().Add(sniffTimeout))
	n, err := io.ReadFull(c, prefix[:])
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	to := s.http
	if string(prefix[:n]) == "PRI" {
		to = s.grpc
	}
	s.deliver(to, &prefixConn{Conn: c, prefix: prefix[:n]})
}

// deliver hands c to one side's Accept, or closes it if the listener
// closes first.
func (s *splitListener) deliver(to *chanListener, c net.Conn) {
	select {
	case to.conns <- c:
	case <-s.done:
		c.Close()
	case <-to.closed:
		c.Close()
	}
}

func (s *splitListener) close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.l.Close()
	})
	return err
}

// Close stops accepting and waits for the connections being sniffed.
func (s *splitListener) Close() error {
	err := s.close()
	s.wg.Wait()
	return err
}

// chanListener is a net.Listener fed by a splitListener.
type chanListener struct {
	addr      net.Addr
	conns     chan net.Conn
	done      <-chan struct{} // the splitListener's
	closed    chan struct{}
	closeOnce sync.Once
}

func newChanListener(addr net.Addr, done <-chan struct{}) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: done, closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close makes Accept return; the splitListener owns the socket.
func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// prefixConn replays the sniffed bytes before reading the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
