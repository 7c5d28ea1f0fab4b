package robustness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/internal/freeport"
)

// snapshotCount is the members' --snapshot-count and
// --snapshot-catchup-entries (their raft log's trailing entries).
const snapshotCount = 100

// member is one strata process. Its peer URL as the others know it is its
// proxy's address; the process listens on peer.
type member struct {
	idx     int
	name    string
	dataDir string
	client  string // host:port, clients talk to it directly
	peer    string // host:port the process listens on for peers
	proxy   *proxy // in front of peer; its address is the advertised peer URL
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	err    error         // cmd.Wait's error, once exited is closed
	paused bool
	// state is its --initial-cluster-state: "new", or "existing" once it
	// has been removed and added again.
	state string
	// env is added to the process's environment (fault injection).
	env []string
}

// running reports whether the process has been started and not reaped.
func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// pid returns the running process's id, or 0.
func (m *member) pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	select {
	case <-m.exited:
		return 0
	default:
		return m.cmd.Process.Pid
	}
}

// cluster is a three-member cluster of strata processes on loopback, with a
// fault-injecting proxy in front of every peer port.
type cluster struct {
	t       *testing.T
	engine  string
	dir     string
	net     *faultNet
	members []*member
	initial string   // --initial-cluster
	args    []string // more flags for every member
}

// clusterOptions change newCluster's defaults.
type clusterOptions struct {
	// args are more flags for every member.
	args []string
	// dataDir, if not nil, gives member i's data directory (a disk that
	// fills up).
	dataDir func(i int) string
	// env, if not nil, gives member i's added environment.
	env func(i int) []string
}

// initialCluster returns --initial-cluster for the members' current
// proxies.
func (c *cluster) initialCluster() string {
	var parts []string
	for _, m := range c.members {
		parts = append(parts, fmt.Sprintf("%s=http://%s", m.name, m.proxy.addr()))
	}
	return strings.Join(parts, ",")
}

// newCluster starts n members running engine and waits until all are
// healthy. Cleanup kills whatever still runs.
func newCluster(t *testing.T, engine string, n int) *cluster {
	t.Helper()
	return newClusterWith(t, engine, n, clusterOptions{})
}

// newClusterWith is newCluster with options.
func newClusterWith(t *testing.T, engine string, n int, o clusterOptions) *cluster {
	t.Helper()
	addrs, err := freeport.Addrs(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, engine: engine, dir: t.TempDir(), args: o.args}
	c.net = newFaultNet(c.pids)
	for i := range n {
		m := &member{idx: i, name: fmt.Sprintf("m%d", i), client: addrs[2*i], peer: addrs[2*i+1], state: "new"}
		m.dataDir = filepath.Join(c.dir, m.name)
		if o.dataDir != nil {
			m.dataDir = o.dataDir(i)
		}
		if o.env != nil {
			m.env = o.env(i)
		}
		m.logPath = filepath.Join(c.dir, m.name+".log")
		c.members = append(c.members, m)
	}
	t.Cleanup(c.close)
	for _, m := range c.members {
		p, err := c.net.listen(m.idx, m.peer)
		if err != nil {
			t.Fatal(err)
		}
		m.proxy = p
	}
	c.initial = c.initialCluster()
	for _, m := range c.members {
		c.start(m)
	}
	c.waitHealthy(60 * time.Second)
	return c
}

// pids maps the running members' process ids to their indexes.
func (c *cluster) pids() map[int]int {
	out := map[int]int{}
	for _, m := range c.members {
		if pid := m.pid(); pid != 0 {
			out[pid] = m.idx
		}
	}
	return out
}

// start starts m's process (again, after a kill: with its data directory
// the flags of a new cluster are ignored, as etcd ignores them).
func (c *cluster) start(m *member) {
	c.t.Helper()
	args := []string{
		"--name=" + m.name,
		"--data-dir=" + m.dataDir,
		"--backend=" + c.engine,
		"--listen-client-urls=http://" + m.client,
		"--advertise-client-urls=http://" + m.client,
		"--listen-peer-urls=http://" + m.peer,
		"--initial-advertise-peer-urls=http://" + m.proxy.addr(),
		"--initial-cluster=" + c.initial,
		"--initial-cluster-state=" + m.state,
		"--initial-cluster-token=robustness",
		"--heartbeat-interval=100",
		"--election-timeout=1000",
		// Small, so that a member that was down catches up by snapshot
		// (the InstallSnapshot path of hashicorp/raft#697).
		fmt.Sprintf("--snapshot-count=%d", snapshotCount),
		fmt.Sprintf("--snapshot-catchup-entries=%d", snapshotCount),
		"--log-level=info",
	}
	args = append(args, c.args...)
	f, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(f, "=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(strataBin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if len(m.env) > 0 {
		cmd.Env = append(os.Environ(), m.env...)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		c.t.Fatal(err)
	}
	exited := make(chan struct{})
	m.mu.Lock()
	m.cmd, m.exited, m.paused = cmd, exited, false
	m.mu.Unlock()
	go func() {
		err := cmd.Wait()
		f.Close()
		m.mu.Lock()
		m.err = err
		m.mu.Unlock()
		close(exited)
	}()
}

// kill sends SIGKILL to m and waits for it to exit.
func (c *cluster) kill(m *member) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-exited
}

// dump makes m's Go runtime print every goroutine's stack to its log and
// exit (SIGQUIT), for a member found hanging: the stacks show where. It
// waits up to 10s for the exit, then kills m.
func (c *cluster) dump(m *member) {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
	c.kill(m)
}

// dumpAll dumps every running member (see dump).
func (c *cluster) dumpAll() {
	for _, m := range c.members {
		if m.running() {
			c.dump(m)
		}
	}
}

// pause stops (SIGSTOP) or resumes (SIGCONT) m.
func (c *cluster) pause(m *member, stop bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := m.cmd.Process.Signal(sig); err != nil {
		c.t.Errorf("%s: %v: %v", m.name, sig, err)
	}
	m.paused = stop
}

// close kills every member and the proxies.
func (c *cluster) close() {
	for _, m := range c.members {
		c.kill(m)
	}
	c.net.close()
}

// endpoints are the members' client addresses.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, "http://"+m.client)
	}
	return eps
}

// waitHealthy waits until every member's /health answers 200: each has a
// leader and serves a linearizable read.
func (c *cluster) waitHealthy(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: time.Second}
	for _, m := range c.members {
		for {
			if !m.running() {
				c.t.Fatalf("%s exited: %v\n%s", m.name, m.err, c.logTail(m, 30))
			}
			resp, err := hc.Get("http://" + m.client + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s not healthy after %v\n%s", m.name, timeout, c.logTail(m, 30))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	hc.CloseIdleConnections()
}

// client returns a clientv3 client of the given endpoints (all members if
// none), closed at cleanup.
func (c *cluster) client(eps ...string) *clientv3.Client {
	c.t.Helper()
	if len(eps) == 0 {
		eps = c.endpoints()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// leader returns the member that is the leader according to a majority of
// the members that answer, or nil.
func (c *cluster) leader(ctx context.Context) *member {
	votes := map[uint64]int{}
	ids := map[uint64]*member{}
	for _, m := range c.members {
		if !m.running() || m.paused {
			continue
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + m.client}, DialTimeout: time.Second, Logger: zap.NewNop()})
		if err != nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, "http://"+m.client)
		cancel()
		cli.Close()
		if err != nil {
			continue
		}
		ids[st.Header.MemberId] = m
		if st.Leader != 0 {
			votes[st.Leader]++
		}
	}
	for id, n := range votes {
		if n >= 2 && ids[id] != nil {
			return ids[id]
		}
	}
	return nil
}

// waitLeader waits for a leader agreed by a majority.
func (c *cluster) waitLeader(timeout time.Duration) *member {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.leader(context.Background()); l != nil {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("no leader after %v", timeout)
	return nil
}

// logTail returns the last n lines m logged.
func (c *cluster) logTail(m *member, n int) string {
	b, _ := os.ReadFile(m.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return m.name + ": " + strings.Join(lines, "\n"+m.name+": ")
}

// checkLogs fails the test if a member reported a data race, panicked or
// hit a fatal error; each of those is a bug whatever the faults.
func (c *cluster) checkLogs() {
	c.t.Helper()
	for _, m := range c.members {
		f, err := os.Open(m.logPath)
		if err != nil {
			c.t.Error(err)
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
				if bytes.Contains(line, []byte(bad)) {
					c.t.Errorf("%s logged %q:\n%s", m.name, line, c.logTail(m, 60))
				}
			}
		}
		f.Close()
	}
}
