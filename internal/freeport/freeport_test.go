package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrs(t *testing.T) {
	addrs, err := Addrs(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("address %s returned twice", a)
		}
		seen[a] = true
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("returned address %s is not free: %v", a, err)
		}
		l.Close()
	}
}

func TestAddrsBelowEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	if low-lowestPort < 1000 {
		t.Skipf("no ephemeral range below which to pick (low %d)", low)
	}
	addrs, err := Addrs(50)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		port, _ := strconv.Atoi(p)
		if port < lowestPort || port >= low {
			t.Errorf("port %d outside [%d, %d)", port, lowestPort, low)
		}
	}
}
