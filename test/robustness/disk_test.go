package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/internal/tmpfstest"
)

// ackWriters put unique keys until stopped and record the acknowledged
// ones: after any fault every one of them must be found.
type ackWriters struct {
	mu     sync.Mutex
	acked  map[string]string
	failed []error
	n      int // acknowledged so far
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startAckWriters starts n writers putting keys under prefix through cli,
// each value of size bytes.
func startAckWriters(cli *clientv3.Client, prefix string, n, size int) *ackWriters {
	ctx, cancel := context.WithCancel(context.Background())
	w := &ackWriters{acked: map[string]string{}, cancel: cancel}
	for i := range n {
		w.wg.Go(func() {
			for j := 0; ctx.Err() == nil; j++ {
				k := fmt.Sprintf("%s%d/%06d", prefix, i, j)
				v := k + "=" + randomValue(max(0, size-len(k)-1))
				octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := cli.Put(octx, k, v)
				ocancel()
				w.mu.Lock()
				if err == nil {
					w.acked[k] = v
					w.n++
				} else if ctx.Err() == nil {
					w.failed = append(w.failed, err)
				}
				w.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return w
}

// count returns how many writes were acknowledged.
func (w *ackWriters) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// waitAcked waits until n more writes are acknowledged.
func (w *ackWriters) waitAcked(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	want := w.count() + n
	deadline := time.Now().Add(timeout)
	for w.count() < want {
		if time.Now().After(deadline) {
			w.mu.Lock()
			errs := w.failed[max(0, len(w.failed)-3):]
			w.mu.Unlock()
			t.Fatalf("%d writes acknowledged in %v, want %d (last errors %v)", w.count()-want+n, timeout, n, errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the writers and returns the acknowledged writes.
func (w *ackWriters) stop() map[string]string {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// checkAcked checks that every running member has every acknowledged write
// under prefix, once it has caught up with the cluster.
func (c *cluster) checkAcked(t *testing.T, prefix string, acked map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli := c.client()
	resp, err := cli.Get(ctx, "caught-up")
	if err != nil {
		t.Fatalf("linearizable read: %v", err)
	}
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		mc := c.client("http://" + m.client)
		var got *clientv3.GetResponse
		for {
			got, err = mc.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
			if err == nil && got.Header.Revision >= resp.Header.Revision {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s has not caught up to revision %d: %v", m.name, resp.Header.Revision, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		have := map[string]string{}
		for _, kv := range got.Kvs {
			have[string(kv.Key)] = string(kv.Value)
		}
		var lost int
		for k, v := range acked {
			if have[k] != v {
				if lost < 5 {
					t.Errorf("%s lost the acknowledged write %s (has %d bytes)", m.name, k, len(have[k]))
				}
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("%s lost %d of %d acknowledged writes", m.name, lost, len(acked))
		}
	}
}

// waitExit waits until m's process exits and returns its exit code.
func (c *cluster) waitExit(t *testing.T, m *member, timeout time.Duration) int {
	t.Helper()
	select {
	case <-m.exited:
	case <-time.After(timeout):
		t.Fatalf("%s still runs %v after the fault\n%s", m.name, timeout, c.logTail(m, 20))
	}
	m.mu.Lock()
	err := m.err
	m.mu.Unlock()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0
	}
	return ee.ExitCode()
}

// logHas reports whether m logged a line holding s.
func (c *cluster) logHas(m *member, s string) bool {
	b, _ := os.ReadFile(m.logPath)
	return strings.Contains(string(b), s)
}

// TestFsyncFailure injects a failing fsync into one member's raft log (the
// fault injection of cmd/strata's STRATA_FAULT_INJECT_WAL_FSYNC: Go does
// not call libc's fsync, so an LD_PRELOAD shim cannot reach it) while
// clients write. The member must exit with status 1 and etcd's "failed to
// save Raft hard state and entries", never acknowledge what it could not
// make durable, and after a restart on a healthy disk nothing acknowledged
// is lost. The raft log is the same for every engine (the engines commit
// without fsync and are rebuilt from the log), so the engines take turns.
func TestFsyncFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, tc := range []struct{ engine, victim string }{
		{"bbolt", "leader"}, {"pebble", "follower"}, {"badger", "leader"},
	} {
		t.Run(tc.engine+"/"+tc.victim, func(t *testing.T) {
			dir := t.TempDir()
			trigger := func(i int) string { return filepath.Join(dir, fmt.Sprintf("fail-fsync-m%d", i)) }
			c := newClusterWith(t, tc.engine, 3, clusterOptions{env: func(i int) []string {
				return []string{"STRATA_FAULT_INJECT_WAL_FSYNC=" + trigger(i)}
			}})
			w := startAckWriters(c.client(), "fsync/", 4, 100)
			defer w.stop()
			w.waitAcked(t, 50, 30*time.Second)
			victim := c.waitLeader(30 * time.Second)
			if tc.victim == "follower" {
				for _, m := range c.members {
					if m != victim {
						victim = m
						break
					}
				}
			}
			if err := os.WriteFile(trigger(victim.idx), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if code := c.waitExit(t, victim, 20*time.Second); code != 1 {
				t.Errorf("%s exited with status %d after a failed fsync, want 1 (etcd's fatal)\n%s", victim.name, code, c.logTail(victim, 20))
			}
			if !c.logHas(victim, "failed to save Raft hard state and entries") {
				t.Errorf("%s did not log etcd's \"failed to save Raft hard state and entries\"\n%s", victim.name, c.logTail(victim, 20))
			}
			// The other two go on.
			w.waitAcked(t, 50, 45*time.Second)
			if err := os.Remove(trigger(victim.idx)); err != nil {
				t.Fatal(err)
			}
			c.start(victim)
			w.waitAcked(t, 50, 45*time.Second)
			acked := w.stop()
			c.checkAcked(t, "fsync/", acked)
			t.Logf("%s: %s %s exited on the failed fsync; %d acknowledged writes, none lost", tc.engine, tc.victim, victim.name, len(acked))
			c.checkLogs()
		})
	}
}

// TestDiskFull fills a member's disk, a tmpfs: first past
// --quota-backend-bytes, where writes fail with etcd's "etcdserver: mvcc:
// database space exceeded", the NOSPACE alarm is raised and reads and
// deletes go on, until a compaction, a defragmentation and the alarm's
// disarm let writes in again; then the disk itself, filled from outside,
// where no write that failed to reach the disk is acknowledged and, once
// space is freed, the member serves again with every acknowledged write.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			mnt := tmpfstest.Mount(t, 256<<20)
			const quota = 32 << 20
			c := newClusterWith(t, eng, 1, clusterOptions{
				args:    []string{fmt.Sprintf("--quota-backend-bytes=%d", quota)},
				dataDir: func(i int) string { return filepath.Join(mnt, fmt.Sprintf("m%d", i)) },
			})
			m := c.members[0]
			cli := c.client()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()

			// Past the quota.
			// Random, so that no engine compresses it away.
			val := randomValue(64 << 10)
			acked := map[string]string{}
			var err error
			for i := 0; i < 4*quota/len(val); i++ {
				k := fmt.Sprintf("quota/%05d", i)
				pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
				_, err = cli.Put(pctx, k, val)
				pcancel()
				if err != nil {
					break
				}
				acked[k] = val
			}
			if !errors.Is(err, rpctypes.ErrNoSpace) {
				t.Fatalf("put past the quota after %d puts: %v, want %v\n%s", len(acked), err, rpctypes.ErrNoSpace, c.logTail(m, 30))
			}
			alarms, err := cli.AlarmList(ctx)
			if err != nil || len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
				t.Fatalf("alarms after the quota: %v, %v; want one NOSPACE", alarms, err)
			}
			if _, err := cli.Put(ctx, "small", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
				t.Errorf("a small put under the NOSPACE alarm: %v, want %v", err, rpctypes.ErrNoSpace)
			}
			if !m.running() {
				t.Fatalf("%s exited at the quota: %v", m.name, m.err)
			}
			c.checkAcked(t, "quota/", acked)
			del, err := cli.Delete(ctx, "quota/", clientv3.WithPrefix())
			if err != nil {
				t.Fatalf("delete under the NOSPACE alarm: %v", err)
			}
			if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
				t.Fatalf("compact: %v", err)
			}
			if _, err := cli.Defragment(ctx, "http://"+m.client); err != nil {
				t.Fatalf("defragment: %v", err)
			}
			if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: alarms.Alarms[0].MemberID, Alarm: pb.AlarmType_NOSPACE}); err != nil {
				t.Fatalf("disarm: %v", err)
			}
			if _, err := cli.Put(ctx, "after-disarm", "v"); err != nil {
				t.Fatalf("put after compaction, defragmentation and disarm: %v", err)
			}
			t.Logf("%s: %d puts of 64 KiB acknowledged before the quota of %d MiB", eng, len(acked), quota>>20)

			// The disk itself full: a ballast file takes what is left
			// (the quota raised out of the way, with a restart).
			c.args = []string{fmt.Sprintf("--quota-backend-bytes=%d", 1<<30)}
			c.kill(m)
			c.start(m)
			c.waitHealthy(60 * time.Second)
			var st syscall.Statfs_t
			if err := syscall.Statfs(mnt, &st); err != nil {
				t.Fatal(err)
			}
			ballast := filepath.Join(mnt, "ballast")
			free := int64(st.Bavail) * st.Bsize
			if err := fillFile(ballast, free-(4<<20)); err != nil {
				t.Fatalf("ballast: %v", err)
			}
			w := startAckWriters(cli, "full/", 4, 32<<10)
			deadline := time.Now().Add(60 * time.Second)
			for m.running() && time.Now().Before(deadline) {
				w.mu.Lock()
				nfail := len(w.failed)
				w.mu.Unlock()
				if nfail > 20 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			acked = w.stop()
			w.mu.Lock()
			errs := w.failed[:min(len(w.failed), 3)]
			w.mu.Unlock()
			exited := !m.running()
			t.Logf("%s: disk full after %d acknowledged puts of 32 KiB: member exited %v (%v), write errors %v", eng, len(acked), exited, m.err, errs)
			if len(errs) == 0 && !exited {
				t.Fatalf("writes on a full disk neither failed nor stopped the member")
			}
			if err := os.Remove(ballast); err != nil {
				t.Fatal(err)
			}
			if exited {
				// Every engine ends as etcd's backend does on a failed
				// commit: "failed to commit tx" naming the full disk,
				// status 1, no panic. Badger writes through mmap'd files,
				// where a page the disk cannot back is a SIGBUS (the Go
				// runtime's "fatal error: fault"): it must refuse the
				// commit first.
				switch {
				case c.logHas(m, "SIGBUS") || c.logHas(m, "fatal error:"):
					t.Errorf("%s died of a fault on the full disk\n%s", m.name, c.logTail(m, 40))
				case !c.logHas(m, "no space left on device"):
					t.Errorf("%s exited without saying the disk is full\n%s", m.name, c.logTail(m, 20))
				case c.logHas(m, "panic:") || c.logHas(m, "goroutine "):
					t.Errorf("%s exited on the full disk with a panic's stack, not a clean error\n%s", m.name, c.logTail(m, 40))
				case exitCode(m) != 1:
					t.Errorf("%s exited on the full disk with %v, want status 1 as etcd's\n%s", m.name, m.err, c.logTail(m, 20))
				}
				c.start(m)
			}
			c.waitHealthy(60 * time.Second)
			if _, err := cli.Put(ctx, "after-space-freed", "v"); err != nil {
				t.Fatalf("put after space is freed: %v", err)
			}
			c.checkAcked(t, "full/", acked)
		})
	}
}

// exitCode is the status m's last process exited with (-1 if killed by a
// signal or still running).
func exitCode(m *member) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.ProcessState == nil {
		return -1
	}
	return m.cmd.ProcessState.ExitCode()
}

// fillFile writes n bytes to a new file at path.
func fillFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		n -= k
	}
	return f.Close()
}

// randomValue returns n random letters and digits.
func randomValue(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[rand.IntN(len(chars))]
	}
	return string(b)
}
