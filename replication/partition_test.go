package replication

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestPartitions cuts a 5-node cluster into a minority holding the leader
// and a majority, then heals it, while clients on every node write and read
// linearizably. The majority must elect a new leader and keep serving; the
// history must be linearizable and every member must converge.
func TestPartitions(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			fn := newFaultNet()
			c := newCluster(t, eng, 5, nil)
			// Restart the nodes on the fault-injecting network.
			for i := range c.nodes {
				c.stop(i)
			}
			c.tweak = func(cfg *Config) { cfg.Dial = fn.dialer(cfg.Bind) }
			for i := range c.nodes {
				c.start(i)
			}
			l := c.leader()

			var h history
			h.run(t, 10, 3, time.Second, func(cl int, _ *rand.Rand) *Node { return c.nodes[cl%len(c.nodes)] })
			time.Sleep(700 * time.Millisecond)
			// Minority: the leader and one follower; majority: the rest.
			minority := []string{l.Addr()}
			var majority []string
			for _, n := range c.nodes {
				switch {
				case n == l:
				case len(minority) < 2:
					minority = append(minority, n.Addr())
				default:
					majority = append(majority, n.Addr())
				}
			}
			fn.partition(minority, majority)
			// The majority elects a leader and serves.
			h.enter(t, 1, 2500*time.Millisecond)
			fn.heal()
			// Healed: every member serves again.
			h.enter(t, 2, 1500*time.Millisecond)
			h.finish(t)
			c.waitConverged()
		})
	}
}
