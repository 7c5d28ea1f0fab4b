// Package freeport reserves loopback TCP addresses for servers that tests
// and benchmarks start in-process or as processes.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// lowestPort is the lowest port Addrs hands out.
const lowestPort = 10000

// Addrs returns n distinct 127.0.0.1:port addresses that were free a moment
// ago. The listeners are closed before returning, so another process could
// take a port in between; for tests on one machine that is good enough.
//
// The ports are below the kernel's ephemeral range where it can be read:
// a port from that range (what listening on port 0 gives) can be taken by
// the local end of any outgoing connection while its server is down, so a
// member restarted on its port would fail with "address already in use".
func Addrs(n int) ([]string, error) {
	lo, hi := lowestPort, ephemeralLow()
	var addrs []string
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(addrs) < n {
		addr := "127.0.0.1:0"
		if hi-lo >= 1000 {
			addr = fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if addr != "127.0.0.1:0" {
				continue // taken: draw again
			}
			return nil, err
		}
		ls = append(ls, l)
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range, or
// 0 when it cannot be read (Addrs then asks the kernel for ports).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil {
		return 0
	}
	return low
}
