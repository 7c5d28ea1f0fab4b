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

func (s *procServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// procCluster is a fresh cluster of server processes on loopback.
type procCluster struct {
	members []*procServer
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
	c := &procCluster{}
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		curl, purl := scheme+addrs[2*i], scheme+addrs[2*i+1]
		args := []string{"--name=" + name, "--data-dir=" + filepath.Join(dir, name),
			"--listen-client-urls=" + curl, "--advertise-client-urls=" + curl,
			"--listen-peer-urls=" + purl, "--initial-advertise-peer-urls=" + purl,
			"--initial-cluster=" + strings.Join(initial, ","), "--initial-cluster-state=new",
			"--log-level=error"}
		args = append(append(args, tf.serverArgs()...), extra...)
		s := &procServer{name: name, client: addrs[2*i], exited: make(chan error, 1), out: &tailBuffer{max: 256 << 10}}
		s.cmd = exec.Command(bin, args...)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		if err := s.cmd.Start(); err != nil {
			c.stop()
			return nil, err
		}
		go func() { s.exited <- s.cmd.Wait() }()
		c.members = append(c.members, s)
	}
	// Ready when every member's /health answers 200: it has a leader and
	// serves a linearizable read.
	timeout := 20 * time.Second
	if n > 1 {
		timeout = 40 * time.Second
	}
	deadline := time.Now().Add(timeout)
	hc, err := tf.httpClient()
	if err != nil {
		c.stop()
		return nil, err
	}
	healthy := make([]bool, n)
	for {
		for _, m := range c.members {
			select {
			case err := <-m.exited:
				m.exited <- err
				c.stop()
				return nil, fmt.Errorf("%s %s exited early: %v\n%s", bin, m.name, err, m.out.String())
			default:
			}
		}
		all := true
		for i, m := range c.members {
			if healthy[i] {
				continue
			}
			if resp, err := hc.Get(scheme + m.client + "/health"); err == nil {
				resp.Body.Close()
				healthy[i] = resp.StatusCode == http.StatusOK
			}
			all = all && healthy[i]
		}
		if all {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s: not every member healthy after %v\n%s", bin, timeout, strings.Join(c.logTail(20), "\n"))
		}
		select {
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
