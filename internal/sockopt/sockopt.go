// Package sockopt opens TCP listeners with etcd's socket options
// (--socket-reuse-port, --socket-reuse-address).
package sockopt

import (
	"context"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Options are the socket options of a listener. The zero value is a
// plain listener.
type Options struct {
	// ReusePort sets SO_REUSEPORT: other sockets with it may bind the same
	// address (etcd's --socket-reuse-port).
	ReusePort bool
	// ReuseAddress sets SO_REUSEADDR (etcd's --socket-reuse-address). Go
	// sets it on every TCP listener on Unix already.
	ReuseAddress bool
}

// Listen listens on the TCP address addr with the options o.
func Listen(addr string, o Options) (net.Listener, error) {
	lc := net.ListenConfig{}
	if o.ReusePort || o.ReuseAddress {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				if o.ReuseAddress {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				}
				if serr == nil && o.ReusePort {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}
