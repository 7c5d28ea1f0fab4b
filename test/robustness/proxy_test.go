package robustness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// faultNet is the fault injector between members (a fake network, named
// as such): a TCP proxy in front of every member's peer port. Each
// direction of a proxied connection is a link from one member to another;
// a link can be cut (its bytes stall, as TCP's do while a network drops
// them, so a cut in one direction is a one-way loss) or delayed. Which
// member opened a connection is found from the kernel's socket table, so
// that a rule can name both ends of a link.
type faultNet struct {
	pids func() map[int]int // running members' process ids to their indexes

	mu      sync.Mutex
	cond    *sync.Cond // broadcast when rules change or a conn closes
	cut     map[link]bool
	delay   map[link]time.Duration
	proxies []*proxy
	wg      sync.WaitGroup

	conns, unknown atomic.Int64 // connections proxied, of them from no known member
}

// link is the direction from one member to another; -1 is a peer the
// proxy could not name.
type link struct{ from, to int }

func newFaultNet(pids func() map[int]int) *faultNet {
	n := &faultNet{pids: pids, cut: map[link]bool{}, delay: map[link]time.Duration{}}
	n.cond = sync.NewCond(&n.mu)
	return n
}

// proxy forwards connections on its listener to one member's peer port.
type proxy struct {
	net    *faultNet
	to     int
	target string
	ln     net.Listener
	conns  map[net.Conn]bool
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// listen starts a proxy for member to, forwarding to target.
func (n *faultNet) listen(to int, target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{net: n, to: to, target: target, ln: ln, conns: map[net.Conn]bool{}}
	n.mu.Lock()
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	n.wg.Go(p.accept)
	return p, nil
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		from := p.net.owner(c.RemoteAddr().(*net.TCPAddr).Port, p.ln.Addr().(*net.TCPAddr).Port)
		p.net.conns.Add(1)
		if from < 0 {
			p.net.unknown.Add(1)
		}
		t, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		n := p.net
		n.mu.Lock()
		p.conns[c], p.conns[t] = true, true
		n.mu.Unlock()
		var both sync.WaitGroup
		both.Add(2)
		n.wg.Go(func() { n.pump(t, c, link{from, p.to}); both.Done() })
		n.wg.Go(func() { n.pump(c, t, link{p.to, from}); both.Done() })
		n.wg.Go(func() {
			both.Wait()
			n.mu.Lock()
			delete(p.conns, c)
			delete(p.conns, t)
			n.mu.Unlock()
		})
	}
}

// pump copies src to dst, holding each chunk while l is cut and for l's
// delay. When one side ends, both are closed.
func (n *faultNet) pump(dst, src net.Conn, l link) {
	defer func() {
		src.Close()
		dst.Close()
		n.mu.Lock()
		n.cond.Broadcast()
		n.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.mu.Lock()
			for n.cut[l] && !n.closed(src) {
				n.cond.Wait()
			}
			d := n.delay[l]
			n.mu.Unlock()
			if d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// closed reports whether c has been closed by reset (n.mu held).
func (n *faultNet) closed(c net.Conn) bool {
	for _, p := range n.proxies {
		if p.conns[c] {
			return false
		}
	}
	return true
}

// isolate cuts every link to and from member i.
func (n *faultNet) isolate(i, members int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for j := -1; j < members; j++ {
		if j != i {
			n.cut[link{i, j}], n.cut[link{j, i}] = true, true
		}
	}
	n.cond.Broadcast()
}

// cutOneWay cuts the links from member from to every other member.
func (n *faultNet) cutOneWay(from, members int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for j := -1; j < members; j++ {
		if j != from {
			n.cut[link{from, j}] = true
		}
	}
	n.cond.Broadcast()
}

// delayAll delays every link by d.
func (n *faultNet) delayAll(d time.Duration, members int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := -1; i < members; i++ {
		for j := -1; j < members; j++ {
			if i != j {
				n.delay[link{i, j}] = d
			}
		}
	}
}

// heal removes every rule; with reset it also closes every proxied
// connection, as a kernel gives up on connections whose peer went silent.
func (n *faultNet) heal(reset bool) {
	n.mu.Lock()
	n.cut, n.delay = map[link]bool{}, map[link]time.Duration{}
	var conns []net.Conn
	if reset {
		for _, p := range n.proxies {
			for c := range p.conns {
				conns = append(conns, c)
				delete(p.conns, c)
			}
		}
	}
	n.cond.Broadcast()
	n.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// close stops the proxies and waits for their goroutines.
func (n *faultNet) close() {
	n.mu.Lock()
	for _, p := range n.proxies {
		p.ln.Close()
	}
	n.mu.Unlock()
	n.heal(true)
	n.wg.Wait()
}

// owner returns the member whose process owns the loopback TCP socket
// with local port port connected to remote port remote, from /proc
// (Linux), or -1.
func (n *faultNet) owner(port, remote int) int {
	inode := socketInode(port, remote)
	if inode == "" {
		return -1
	}
	want := "socket:[" + inode + "]"
	for pid, idx := range n.pids() {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == want {
				return idx
			}
		}
	}
	return -1
}

// socketInode finds the inode of the socket 127.0.0.1:port ->
// 127.0.0.1:remote in /proc/net/tcp.
func socketInode(port, remote int) string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", port)
	rem := fmt.Sprintf("0100007F:%04X", remote)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) > 9 && fs[1] == local && fs[2] == rem {
			return fs[9]
		}
	}
	return ""
}
