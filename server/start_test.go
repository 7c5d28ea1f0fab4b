package server_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/server"
)

// TestStartKeepsCallerConfig checks that Start leaves the caller's Config
// as it was (it works on a copy with defaults filled in), and that a
// member without --advertise-client-urls announces the client URLs it
// bound.
func TestStartKeepsCallerConfig(t *testing.T) {
	var before server.Config
	c := newCluster(t, 1, bbolt.Engine(), func(cfg *server.Config) {
		before = *cfg
		before.ListenClientURLs = slices.Clone(cfg.ListenClientURLs)
		before.ListenPeerURLs = slices.Clone(cfg.ListenPeerURLs)
		before.InitialAdvertisePeerURLs = slices.Clone(cfg.InitialAdvertisePeerURLs)
	})
	after := c.cfgs[0]
	// Engines hold functions, which reflect.DeepEqual never finds equal.
	before.Engine, after.Engine = engine.Engine{}, engine.Engine{}
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("Start changed the caller's Config to\n%+v\nwant\n%+v", after, before)
	}

	bound := c.members[0].ClientURLs()
	cli := c.client()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := cli.MemberList(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Members) == 1 && slices.Equal(resp.Members[0].ClientURLs, bound) {
			return
		}
		// The member publishes its attributes once it is ready.
		if time.Now().After(deadline) {
			t.Fatalf("members %v, want one announcing %v", resp.Members, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
