package replication

import (
	"errors"
	"net"
	"sync"
	"time"
)

// faultNet is a fault-injecting network for tests: every node dials through
// it, and it can cut pairs of nodes apart (closing their connections and
// refusing new ones) and heal them. Real TCP underneath.
type faultNet struct {
	mu      sync.Mutex
	addrOf  map[string]string        // node ID -> peer address
	blocked map[[2]string]bool       // (from, to) address pairs that are cut
	conns   map[[2]string][]net.Conn // open connections per pair
}

func newFaultNet() *faultNet {
	return &faultNet{addrOf: map[string]string{}, blocked: map[[2]string]bool{}, conns: map[[2]string][]net.Conn{}}
}

var errPartitioned = errors.New("faultnet: partitioned")

// dialer returns the Dialer for the node whose peer address is from.
func (f *faultNet) dialer(from string) Dialer {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		pair := [2]string{from, addr}
		f.mu.Lock()
		cut := f.blocked[pair]
		f.mu.Unlock()
		if cut {
			return nil, errPartitioned
		}
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.blocked[pair] {
			c.Close()
			return nil, errPartitioned
		}
		f.conns[pair] = append(f.conns[pair], c)
		return c, nil
	}
}

// partition cuts every node of a from every node of b, both ways.
func (f *faultNet) partition(a, b []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			for _, pair := range [][2]string{{x, y}, {y, x}} {
				f.blocked[pair] = true
				for _, c := range f.conns[pair] {
					c.Close()
				}
				delete(f.conns, pair)
			}
		}
	}
}

// heal removes every cut.
func (f *faultNet) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.blocked = map[[2]string]bool{}
}
