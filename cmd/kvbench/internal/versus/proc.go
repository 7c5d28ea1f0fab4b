package versus

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-kv/strata/internal/freeport"
)

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// procServer is one server process.
type procServer struct {
	name   string
	cmd    *exec.Cmd
	client string // host:port
	exited chan error
	out    *tailBuffer
}

// stop stops the process (SIGTERM, then SIGKILL after 10 s); stopping a
// stopped one does nothing.
func (s *procServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		err = <-s.exited
	}
	s.exited <- err
}

// procCluster is a cluster of server processes on loopback. Its members
// keep their command lines, addresses and data directories across a
// restart.
type procCluster struct {
	bin     string
	scheme  string
	tf      *tlsFiles
	members []*procServer
	// args are each member's command line, clients their client addresses
	// (host:port), dirs their data directories.
	args    [][]string
	clients []string
	dirs    []string
}

func (c *procCluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.client)
	}
	return eps
}

func (c *procCluster) stop() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Go(m.stop)
	}
	wg.Wait()
}

// pids returns the members' process ids.
func (c *procCluster) pids() []int {
	var out []int
	for _, m := range c.members {
		out = append(out, m.cmd.Process.Pid)
	}
	return out
}

// logTail returns the last lines each member printed, prefixed by its name.
func (c *procCluster) logTail(maxLines int) []string {
	var out []string
	for _, m := range c.members {
		lines := strings.Split(strings.TrimRight(m.out.String(), "\n"), "\n")
		if len(lines) == 1 && lines[0] == "" {
			continue
		}
		if len(lines) > maxLines {
			out = append(out, fmt.Sprintf("%s: (%d earlier lines left out)", m.name, len(lines)-maxLines))
			lines = lines[len(lines)-maxLines:]
		}
		for _, l := range lines {
			out = append(out, m.name+": "+l)
		}
	}
	return out
}

// startCluster starts n members of bin, each with its own data directory
// under dir, and waits until every member's /health answers 200.
func startCluster(ctx context.Context, bin string, extra []string, dir string, n int, tf *tlsFiles) (*procCluster, error) {
	scheme := "http://"
	if tf != nil {
		scheme = "https://"
	}
	addrs, err := freeport.Addrs(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=%s%s", i, scheme, addrs[2*i+1]))
	}
	c := &procCluster{bin: bin, scheme: scheme, tf: tf}
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		curl, purl := scheme+addrs[2*i], scheme+addrs[2*i+1]
		data := filepath.Join(dir, name)
		args := []string{"--name=" + name, "--data-dir=" + data,
			"--listen-client-urls=" + curl, "--advertise-client-urls=" + curl,
			"--listen-peer-urls=" + purl, "--initial-advertise-peer-urls=" + purl,
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new",
			"--log-level=error"}
		c.args = append(c.args, append(append(args, tf.serverArgs()...), extra...))
		c.clients = append(c.clients, addrs[2*i])
		c.dirs = append(c.dirs, data)
	}
	if err := c.launch(); err != nil {
		return nil, err
	}
	timeout := 20 * time.Second
	if n > 1 {
		timeout = 40 * time.Second
	}
	if err := c.waitHealthy(ctx, 100*time.Millisecond, timeout); err != nil {
		return nil, err
	}
	return c, nil
}

// launch starts every member's process (again, after stop: a restart on
// the same data directories and addresses).
func (c *procCluster) launch() error {
	c.members = nil
	for i, args := range c.args {
		name := fmt.Sprintf("m%d", i)
		s := &procServer{name: name, client: c.clients[i], exited: make(chan error, 1), out: &tailBuffer{max: 256 << 10}}
		s.cmd = exec.Command(c.bin, args...)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			c.stop()
			return err
		}
		go func() { s.exited <- s.cmd.Wait() }()
		c.members = append(c.members, s)
	}
	return nil
}

// waitHealthy waits, checking every poll, until every member's /health
// answers 200: it has a leader and serves a linearizable read. It stops
// the cluster when that takes longer than timeout.
func (c *procCluster) waitHealthy(ctx context.Context, poll, timeout time.Duration) error {
	n := len(c.members)
	deadline := time.Now().Add(timeout)
	hc, err := c.tf.httpClient()
	if err != nil {
		c.stop()
		return err
	}
	healthy := make([]bool, n)
	for {
		for _, m := range c.members {
			select {
			case err := <-m.exited:
				m.exited <- err
				c.stop()
				return fmt.Errorf("%s %s exited early: %v\n%s", c.bin, m.name, err, m.out.String())
			default:
			}
		}
		all := true
		for i, m := range c.members {
			if healthy[i] {
				continue
			}
			if resp, err := hc.Get(c.scheme + m.client + "/health"); err == nil {
				resp.Body.Close()
				healthy[i] = resp.StatusCode == http.StatusOK
			}
			all = all && healthy[i]
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return fmt.Errorf("%s: not every member healthy after %v\n%s", c.bin, timeout, strings.Join(c.logTail(20), "\n"))
		}
		select {
		case <-ctx.Done():
			c.stop()
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}
