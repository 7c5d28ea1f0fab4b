package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	"go.uber.org/zap"

	"github.com/strata-kv/strata/internal/freeport"
)

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a strata member running as its own process (this test binary
// run as main).
type proc struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
	err  error
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), runAsMainEnv+"=1")
	return startCmd(t, cmd)
}

// startCmd starts cmd as a proc, its output kept, stopped at the test's
// end.
func startCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop ends the process with SIGTERM, as an operator would.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("member did not stop on SIGTERM; output:\n%s", p.out.String())
	}
}

// procCluster is three strata processes on bbolt.
type procCluster struct {
	t                    *testing.T
	dir                  string
	clients, peers, args [][]string
	procs                []*proc
}

func newProcCluster(t *testing.T, extra ...string) *procCluster {
	addrs, err := freeport.Addrs(6)
	if err != nil {
		t.Fatal(err)
	}
	c := &procCluster{t: t, dir: t.TempDir(), procs: make([]*proc, 3)}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, addrs[3+i]))
	}
	for i := range 3 {
		client, peer := "http://"+addrs[i], "http://"+addrs[3+i]
		c.clients = append(c.clients, []string{client})
		c.args = append(c.args, append([]string{"--name", fmt.Sprint("m", i), "--data-dir", c.dataDir(i),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--backend", "bbolt",
			"--heartbeat-interval", "50", "--election-timeout", "500"}, extra...))
	}
	for i := range 3 {
		c.procs[i] = startProc(t, c.args[i]...)
	}
	for i := range 3 {
		c.waitServing(i)
	}
	return c
}

func (c *procCluster) dataDir(i int) string { return filepath.Join(c.dir, fmt.Sprint("m", i)) }

func (c *procCluster) client(members ...int) *clientv3.Client {
	var eps []string
	for _, i := range members {
		eps = append(eps, c.clients[i]...)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// waitServing waits until member i answers a serializable read.
func (c *procCluster) waitServing(i int) {
	c.t.Helper()
	cli := c.client(i)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "x", clientv3.WithSerializable())
		cancel()
		if err == nil {
			return
		}
		select {
		case <-c.procs[i].done:
			c.t.Fatalf("member %d exited: %v\n%s", i, c.procs[i].err, c.procs[i].out.String())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("member %d does not serve: %v\n%s", i, err, c.procs[i].out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProcessCorruptionAndForceNewCluster runs three strata processes
// with --corrupt-check-time, changes a value in a stopped member's bbolt
// file, and checks with etcd's flags that: restarted with
// --feature-gates=InitialCorruptCheck=true it exits with "found data
// inconsistency with peers"; restarted without it, the leader raises the
// CORRUPT alarm and writes are refused; and, once the cluster has lost two
// members, --force-new-cluster brings the third back alone with its data.
func TestProcessCorruptionAndForceNewCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := newProcCluster(t, "--corrupt-check-time", "300ms")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cli := c.client(0, 1)
	for i := range 10 {
		if _, err := cli.Put(ctx, fmt.Sprint("k", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, "victim", "precious-AAAAAAAAAAAAAAAA"); err != nil {
		t.Fatal(err)
	}
	m2 := c.client(2)
	deadline := time.Now().Add(15 * time.Second)
	for {
		g, err := m2.Get(ctx, "victim", clientv3.WithSerializable())
		if err == nil && len(g.Kvs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("member 2 did not apply the victim")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.procs[2].stop(t)
	db := filepath.Join(c.dataDir(2), "member", "data", "data.db")
	b, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("precious-AAAAAAAAAAAAAAAA"), []byte("precious-AAAAAAAABAAAAAAA"))
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}

	// The initial check: the member refuses to serve and exits.
	p := startProc(t, append(c.args[2], "--feature-gates=InitialCorruptCheck=true")...)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the corrupted member did not exit:\n%s", p.out.String())
	}
	if p.err == nil || !strings.Contains(p.out.String(), "found data inconsistency with peers") {
		t.Fatalf("corrupted member exited with %v, output:\n%s", p.err, p.out.String())
	}

	// The periodic check: the leader raises the alarm; writes are refused.
	c.procs[2] = startProc(t, c.args[2]...)
	c.waitServing(2)
	var alarms []*pb.AlarmMember
	deadline = time.Now().Add(20 * time.Second)
	for len(alarms) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no CORRUPT alarm")
		}
		time.Sleep(50 * time.Millisecond)
		resp, err := cli.AlarmList(ctx)
		if err != nil {
			continue
		}
		for _, a := range resp.Alarms {
			if a.Alarm == pb.AlarmType_CORRUPT {
				alarms = append(alarms, a)
			}
		}
	}
	if _, err := cli.Put(ctx, "k", "x"); !errors.Is(err, rpctypes.ErrCorrupt) {
		t.Fatalf("put under the CORRUPT alarm: %v", err)
	}

	// The corrupted member goes; the alarm is cleared; then member 1 is
	// lost too, and member 0, forced into a new cluster, serves alone.
	c.procs[2].stop(t)
	for _, a := range alarms {
		if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			t.Fatal(err)
		}
	}
	c.procs[1].stop(t)
	c.procs[0].stop(t)
	c.procs[0] = startProc(t, append(c.args[0], "--force-new-cluster")...)
	c.waitServing(0)
	m0 := c.client(0)
	if _, err := m0.Put(ctx, "after", "1"); err != nil {
		t.Fatalf("put after --force-new-cluster: %v\n%s", err, c.procs[0].out.String())
	}
	g, err := m0.Get(ctx, "victim")
	if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "precious-AAAAAAAAAAAAAAAA" {
		t.Fatalf("victim after --force-new-cluster: %v %v", g, err)
	}
	ml, err := m0.MemberList(ctx)
	if err != nil || len(ml.Members) != 1 {
		t.Fatalf("members after --force-new-cluster: %v %v", ml, err)
	}
}

// TestProcessSIGTERMHandsOffLeadership sends SIGTERM to the leader of
// three strata processes, as systemd or the kubelet stops etcd: as etcd's
// graceful shutdown, the leader hands leadership to a caught-up follower
// before it exits (status 0), so the term rises by exactly one (an
// election after a vanished leader would take at least one more) and
// the acknowledged writes are all there.
func TestProcessSIGTERMHandsOffLeadership(t *testing.T) {
	c := newProcCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := c.client(0, 1, 2)
	for i := range 50 {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	status := func(i int) *clientv3.StatusResponse {
		t.Helper()
		st, err := c.client(i).Status(ctx, c.clients[i][0])
		if err != nil {
			t.Fatalf("status of member %d: %v", i, err)
		}
		return st
	}
	lead, term := -1, uint64(0)
	for i := range 3 {
		if st := status(i); st.Leader == st.Header.MemberId {
			lead, term = i, st.RaftTerm
		}
	}
	if lead < 0 {
		t.Fatal("no member leads")
	}
	p := c.procs[lead]
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the leader did not exit 30s after SIGTERM:\n%s", p.out.String())
	}
	if p.err != nil {
		t.Fatalf("the leader exited with %v after SIGTERM:\n%s", p.err, p.out.String())
	}
	out := p.out.String()
	for _, msg := range []string{`"msg":"received signal; shutting down"`, `"msg":"leadership transfer starting"`, `"msg":"leadership transfer finished"`} {
		if !strings.Contains(out, msg) {
			t.Errorf("the leader's log lacks %s:\n%s", msg, out)
		}
	}
	f := (lead + 1) % 3
	st := status(f)
	for deadline := time.Now().Add(5 * time.Second); st.Leader == 0 && time.Now().Before(deadline); st = status(f) {
		time.Sleep(50 * time.Millisecond)
	}
	if st.Leader == 0 {
		t.Fatalf("member %d knows no leader 5s after the hand-off", f)
	}
	if st.RaftTerm != term+1 {
		t.Errorf("term %d after the hand-off, %d before: want exactly one more", st.RaftTerm, term)
	}
	resp, err := c.client(f).Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 50 {
		t.Errorf("%d keys after the hand-off, want 50", resp.Count)
	}
}
