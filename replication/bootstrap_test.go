package replication

import (
	"errors"
	"testing"
)

func TestBootstrapOffline(t *testing.T) {
	peers := []Peer{{ID: "a", Addr: "127.0.0.1:1"}, {ID: "b", Addr: "127.0.0.1:2"}}
	cfg := Config{ID: "a", Dir: t.TempDir(), OpenLog: openWAL}
	for _, c := range []struct {
		name  string
		cfg   Config
		peers []Peer
		want  error
	}{
		{"no log", Config{ID: "a", Dir: cfg.Dir}, peers, ErrInvalidConfig},
		{"no peers", cfg, nil, ErrInvalidConfig},
		{"first", cfg, peers, nil},
		{"again", cfg, peers, ErrExistingState},
	} {
		if err := Bootstrap(c.cfg, c.peers); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Fatalf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}
