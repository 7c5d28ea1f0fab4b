package freeport

import (
	"net"
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
