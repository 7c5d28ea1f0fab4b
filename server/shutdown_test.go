package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/server"
)

// TestLeaderHandsOffOnClose closes the leader of a 3-member cluster while a
// client writes through a follower: as etcd's Stop, the leader hands
// leadership to a caught-up voter first, so a new leader exists when Close
// returns (the others wait for no election timeout), the term rises by
// exactly one, every acknowledged write is there, and the leader's log has
// etcd's "leadership transfer starting/finished" lines.
func TestLeaderHandsOffOnClose(t *testing.T) {
	logs := make([]*syncBuffer, 3)
	n := 0
	c := newCluster(t, 3, engines()[0], func(cfg *server.Config) {
		logs[n] = &syncBuffer{}
		cfg.Logger = slog.New(slog.NewJSONHandler(logs[n], nil))
		n++
	})
	li := c.leader()
	fi := (li + 1) % 3
	cli := c.client(fi)
	ctx := ctxT(t)
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	term := c.members[li].Node().Term()
	for i, m := range c.members {
		if got := m.Node().Term(); got != term {
			t.Fatalf("member %d at term %d, leader at %d", i, got, term)
		}
	}

	// A writer through a follower while the leader stops; the keys it
	// was told were written must all be there afterwards.
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	wctx, stopWriter := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			k := fmt.Sprintf("w%05d", i)
			pctx, cancel := context.WithTimeout(wctx, 2*time.Second)
			_, err := cli.Put(pctx, k, "v")
			cancel()
			if err == nil {
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)

	if err := c.members[li].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[li] = nil
	closed := time.Now()
	// The transferee leads when Close returns; allow a few heartbeats for
	// the other follower to hear of it, far below the election timeout
	// (1s here) that an election after a silent leader would take.
	newLeader := -1
	for newLeader < 0 && time.Since(closed) < 300*time.Millisecond {
		for i, m := range c.members {
			if m != nil && m.Node().IsLeader() {
				newLeader = i
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if newLeader < 0 {
		t.Fatalf("no leader 300ms after the old leader's Close returned")
	}
	for i, m := range c.members {
		if m == nil {
			continue
		}
		if got := m.Node().Term(); got != term+1 {
			t.Errorf("member %d at term %d after the hand-off, want %d (one more than %d)", i, got, term+1, term)
		}
	}
	time.Sleep(200 * time.Millisecond)
	stopWriter()
	wg.Wait()

	mu.Lock()
	keys := append([]string(nil), acked...)
	mu.Unlock()
	if len(keys) == 0 {
		t.Fatal("no write acknowledged while the leader stopped")
	}
	for _, i := range []int{newLeader, 3 - li - newLeader} {
		resp, err := c.client(i).Get(ctx, "w", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, kv := range resp.Kvs {
			have[string(kv.Key)] = true
		}
		for _, k := range keys {
			if !have[k] {
				t.Errorf("member %d lacks acknowledged key %s", i, k)
			}
		}
	}

	var starting, finished map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs[li].String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch rec["msg"] {
		case "leadership transfer starting":
			starting = rec
		case "leadership transfer finished":
			finished = rec
		}
	}
	if starting == nil || finished == nil {
		t.Fatalf("the old leader's log lacks the transfer lines:\n%s", logs[li])
	}
	want := c.members[newLeader].Node().ID()
	if starting["transferee-member-id"] != want || finished["new-leader-member-id"] != want {
		t.Errorf("transfer lines name %v and %v, want the new leader %s", starting["transferee-member-id"], finished["new-leader-member-id"], want)
	}
	for _, f := range []string{"local-member-id", "current-leader-member-id"} {
		if starting[f] == nil {
			t.Errorf("transfer starting line lacks %s: %v", f, starting)
		}
	}
	for _, f := range []string{"local-member-id", "old-leader-member-id", "took"} {
		if finished[f] == nil {
			t.Errorf("transfer finished line lacks %s: %v", f, finished)
		}
	}
}

// TestLoneLeaderSkipsHandOff: a single member stops at once, logging
// etcd's skip line.
func TestLoneLeaderSkipsHandOff(t *testing.T) {
	var log syncBuffer
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(&log, nil))
	})
	if err := c.members[0].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[0] = nil
	if !strings.Contains(log.String(), `"msg":"skipped leadership transfer for single voting member cluster"`) {
		t.Errorf("no skip line in the log:\n%s", log.String())
	}
}
