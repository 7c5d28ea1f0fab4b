package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/server"
)

// findLine waits up to 20s for a line of the JSON log at path that ok
// accepts.
func findLine(t *testing.T, path, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for _, l := range readLogLines(t, path) {
			if ok(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s line in %s after 20s", what, filepath.Base(path))
		}
	}
}

func hasLine(t *testing.T, path string, ok func(map[string]any) bool) bool {
	for _, l := range readLogLines(t, path) {
		if ok(l) {
			return true
		}
	}
	return false
}

func msgIs(msg string) func(map[string]any) bool {
	return func(l map[string]any) bool { return l["msg"] == msg }
}

// TestOperatorLogLines runs three members logging etcd's JSON to files
// and makes each line operators grep etcd's logs for happen for real,
// then checks it with etcd's fields: "apply request took too long" for a
// write and for a read-only range (--warning-apply-duration, here 1ns),
// "slow fdatasync" (a raft log fsync slowed past 1s: the test's fault),
// the slow request "trace" of the put that waited for it, and, with the
// two followers stopped, "lost leader" and "waiting for ReadIndex
// response took too long" with the linearizable read's trace; the slow
// applies and read indexes are counted in etcd's metrics.
func TestOperatorLogLines(t *testing.T) {
	dir := t.TempDir()
	logOf := func(name string) string { return filepath.Join(dir, name+".log") }
	var slowSyncs []*atomic.Bool // one per member
	c := newCluster(t, 3, bbolt.Engine(), func(cfg *server.Config) {
		cfg.Logger = nil
		cfg.LogOutputs = []string{logOf(cfg.Name)}
		cfg.WarningApplyDuration = time.Nanosecond
		slow := new(atomic.Bool)
		slowSyncs = append(slowSyncs, slow)
		cfg.WALSyncFault = func() error { // a fault for this test: one slow fsync
			if slow.CompareAndSwap(true, false) {
				time.Sleep(1100 * time.Millisecond)
			}
			return nil
		}
	})
	lead := c.leader()
	leadLog := logOf(c.cfgs[lead].Name)
	cli := c.client(lead)
	ctx := ctxT(t)

	if _, err := cli.Put(ctx, "apply-key", "v"); err != nil {
		t.Fatal(err)
	}
	l := findLine(t, leadLog, "write's apply warning", func(l map[string]any) bool {
		r, _ := l["request"].(string)
		return l["msg"] == "apply request took too long" && l["prefix"] == "" && strings.Contains(r, "apply-key")
	})
	for _, k := range []string{"took", "expected-duration", "response"} {
		if _, ok := l[k]; !ok {
			t.Errorf("apply warning has no %q: %v", k, l)
		}
	}
	if l["level"] != "warn" || l["expected-duration"] != "1ns" {
		t.Errorf("apply warning %v: want level warn, expected-duration 1ns", l)
	}
	if _, err := cli.Get(ctx, "apply-key", clientv3.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	l = findLine(t, leadLog, "read-only range apply warning", func(l map[string]any) bool {
		return l["msg"] == "apply request took too long" && l["prefix"] == "read-only range "
	})
	if r, _ := l["response"].(string); !regexp.MustCompile(`^range_response_count:1 size:\d+$`).MatchString(r) {
		t.Errorf("read-only range warning's response %q", r)
	}

	// One slow raft log fsync on the leader and on one follower: the put
	// waits for one of them, as a commit needs a quorum holding its entry
	// durably (the leader syncs its own log while it replicates, so one
	// slow member alone would not hold a commit back; two slow followers
	// would stop answering the leader's heartbeats' lease checks).
	slowSyncs[lead].Store(true)
	slowSyncs[(lead+1)%len(slowSyncs)].Store(true)
	if _, err := cli.Put(ctx, "slow-key", "v"); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, cfg := range c.cfgs {
		for _, l := range readLogLines(t, logOf(cfg.Name)) {
			if l["msg"] == "slow fdatasync" && l["level"] == "warn" && l["expected-duration"] == "1s" {
				found = true
			}
		}
	}
	if !found {
		t.Error(`no "slow fdatasync" line with expected-duration 1s in any member's log`)
	}
	l = findLine(t, leadLog, "put's trace", func(l map[string]any) bool {
		d, _ := l["detail"].(string)
		return l["msg"] == "trace" && l["operation"] == "put" && strings.Contains(d, "key:slow-key; ")
	})
	checkTrace(t, l, "process raft request")

	// The followers stop: the leader loses its quorum, then its
	// leadership; a linearizable read waits for a ReadIndex in vain.
	for i := range c.members {
		if i != lead {
			if err := c.members[i].Close(); err != nil {
				t.Fatal(err)
			}
			c.members[i] = nil
		}
	}
	// Linearizable reads until one has waited past etcd's 500ms retry
	// time (one that starts as the leader steps down fails sooner).
	for deadline := time.Now().Add(20 * time.Second); ; {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cli.Get(rctx, "slow-key")
		cancel()
		if err == nil {
			t.Fatal("a linearizable read without quorum succeeded")
		}
		if hasLine(t, leadLog, msgIs("waiting for ReadIndex response took too long, retrying")) || time.Now().After(deadline) {
			break
		}
	}
	leadID := fmt.Sprintf("%x", c.members[lead].MemberID())
	l = findLine(t, leadLog, "lost leader", func(l map[string]any) bool {
		m, _ := l["msg"].(string)
		return regexp.MustCompile(`^raft\.node: ` + leadID + ` lost leader ` + leadID + ` at term \d+$`).MatchString(m)
	})
	if l["logger"] != "raft" || l["level"] != "info" {
		t.Errorf("lost leader line %v: want logger raft, level info", l)
	}
	l = findLine(t, leadLog, "ReadIndex warning", msgIs("waiting for ReadIndex response took too long, retrying"))
	if l["level"] != "warn" || l["retry-timeout"] != "500ms" {
		t.Errorf("ReadIndex warning %v: want level warn, retry-timeout 500ms", l)
	}
	l = findLine(t, leadLog, "linearizable range's trace", func(l map[string]any) bool {
		d, _ := l["detail"].(string)
		steps, _ := l["steps"].([]any)
		return l["msg"] == "trace" && l["operation"] == "range" && strings.Contains(d, "range_begin:slow-key; ") && len(steps) > 0
	})
	checkTrace(t, l, "agreement among raft nodes before linearized reading")
	if os.Getenv("PEEK") != "" {
		b, _ := os.ReadFile(leadLog)
		t.Logf("%s", b)
	}

	fams := scrape(t, c.members[lead].ClientURLs()[0]+"/metrics")
	for _, name := range []string{"etcd_server_slow_apply_total", "etcd_server_slow_read_indexes_total"} {
		if f := fams[name]; f == nil || f.Metric[0].GetCounter().GetValue() < 1 {
			t.Errorf("%s: %v, want >= 1", name, f)
		}
	}
}

// checkTrace checks a "trace" line has etcd's fields and a step named
// step that took longer than its share of the 100ms threshold.
func checkTrace(t *testing.T, l map[string]any, step string) {
	t.Helper()
	for _, k := range []string{"trace_id", "operation", "detail", "duration", "start", "end", "steps", "step_count"} {
		if _, ok := l[k]; !ok {
			t.Errorf("trace has no %q: %v", k, l)
		}
	}
	if d, err := time.ParseDuration(fmt.Sprint(l["duration"])); err != nil || d <= 100*time.Millisecond {
		t.Errorf("trace duration %v (%v): want > 100ms", l["duration"], err)
	}
	for _, k := range []string{"start", "end"} {
		if ts, _ := l[k].(string); !etcdTS.MatchString(ts) {
			t.Errorf("trace %s %q is not etcd's time format", k, ts)
		}
	}
	steps, _ := l["steps"].([]any)
	re := regexp.MustCompile(`^'` + regexp.QuoteMeta(step) + `'  \(duration: [0-9.]+[µnm]?s\)$`)
	for _, s := range steps {
		if str, _ := s.(string); re.MatchString(str) {
			if n, _ := l["step_count"].(float64); int(n) != len(steps) {
				t.Errorf("step_count %v, %d steps", l["step_count"], len(steps))
			}
			return
		}
	}
	t.Errorf("trace steps %q lack %q", steps, step)
}
