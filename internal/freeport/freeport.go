// Package freeport reserves loopback TCP addresses for servers that tests
// and benchmarks start in-process.
package freeport

import "net"

// Addrs returns n distinct 127.0.0.1:port addresses that were free a moment
// ago. The listeners are closed before returning, so another process could
// take a port in between; for tests on one machine that is good enough.
func Addrs(n int) ([]string, error) {
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}
