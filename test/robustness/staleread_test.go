package robustness

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestPausedLeaderServesNoStaleRead pauses the leader (SIGSTOP) under
// write load until the others elect a new leader and commit a write, with
// linearizable reads queued at the paused leader's client port, then
// resumes it: the queued reads reach a member that still believes it
// leads, and replies its followers sent to requests from before the pause
// wait in its sockets. Every read it answers must see the write committed
// meanwhile. (hashicorp/raft v1.8.0's VerifyLeader counts such replies;
// the long robustness run saw this as a revision going backwards.) One
// round in the short form, twenty in the long one; the race it looks for
// is narrow, so a pass is evidence, not proof.
func TestPausedLeaderServesNoStaleRead(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newCluster(t, "bbolt", 3)
	w := startAckWriters(c.client(), "load/", 8, 100)
	defer w.stop()
	rounds := 1
	if longDuration(t) > 0 {
		rounds = 20
	}
	const readers = 64
	var served, stale int
	for round := range rounds {
		l := c.waitLeader(30 * time.Second)
		var others []string
		for _, m := range c.members {
			if m != l {
				others = append(others, "http://"+m.client)
			}
		}
		old := c.client("http://" + l.client)
		if _, err := old.Get(context.Background(), "warm"); err != nil {
			t.Fatalf("round %d: read at the leader: %v", round, err)
		}
		rest := c.client(others...)
		w.waitAcked(t, 50, 30*time.Second)
		c.pause(l, true)
		// A new leader among the others commits a write.
		var rev int64
		deadline := time.Now().Add(30 * time.Second)
		for key := fmt.Sprintf("stale/%d", round); ; {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			resp, err := rest.Put(ctx, key, "v")
			cancel()
			if err == nil {
				rev = resp.Header.Revision
				break
			}
			if time.Now().After(deadline) {
				c.pause(l, false)
				t.Fatalf("round %d: no write committed without the paused leader: %v", round, err)
			}
		}
		// Reads queued at the paused member, answered once it resumes.
		var mu sync.Mutex
		var got []int64
		var wg sync.WaitGroup
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := old.Get(ctx, "warm")
				if err == nil {
					mu.Lock()
					got = append(got, resp.Header.Revision)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(300 * time.Millisecond)
		c.pause(l, false)
		wg.Wait()
		for _, r := range got {
			served++
			if r < rev {
				stale++
				t.Errorf("round %d: %s answered a linearizable read at revision %d after revision %d was committed without it", round, l.name, r, rev)
			}
		}
	}
	t.Logf("%d rounds: %d reads served by a resumed leader, %d stale", rounds, served, stale)
	w.stop()
	c.checkLogs()
}
