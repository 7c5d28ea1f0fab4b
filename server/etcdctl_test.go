package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// etcdctlPath returns the etcdctl binary to test with: $STRATA_ETCDCTL, or
// an etcdctl on $PATH; the test skips when there is none.
func etcdctlPath(t *testing.T) string {
	p := os.Getenv("STRATA_ETCDCTL")
	if p == "" {
		p, _ = exec.LookPath("etcdctl")
	}
	if fi, err := os.Stat(p); p != "" && err == nil && !fi.IsDir() {
		return p
	}
	t.Skip("no etcdctl binary: set STRATA_ETCDCTL (or put etcdctl on PATH) to run this test against a real etcdctl (v3.7)")
	return ""
}

// etcdctl runs a real etcdctl against the endpoints of a cluster.
type etcdctl struct {
	t   *testing.T
	bin string
	// endpoints returns the endpoints of the next command.
	endpoints func() []string
	// log logs every command and its output.
	log bool
}

// run runs etcdctl with args and stdin; on error the output includes
// what etcdctl wrote to stderr.
func (c etcdctl) run(stdin string, args ...string) (string, error) {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--endpoints=" + strings.Join(c.endpoints(), ","), "--command-timeout=10s"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if c.log {
		c.t.Logf("etcdctl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// must runs etcdctl and fails the test if it fails.
func (c etcdctl) must(stdin string, args ...string) string {
	c.t.Helper()
	out, err := c.run(stdin, args...)
	if err != nil {
		c.t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestEtcdctl drives a member with the real etcdctl.
func TestEtcdctl(t *testing.T) {
	bin := etcdctlPath(t)
	c := newCluster(t, 1, engines()[0], nil)
	ep := c.endpoint(0)
	ctl := etcdctl{t: t, bin: bin, endpoints: func() []string { return []string{ep} }}
	run, must := ctl.run, ctl.must
	expect := func(got, want string, args ...string) {
		t.Helper()
		if got != want {
			t.Fatalf("etcdctl %s:\n%s\nwant:\n%s", strings.Join(args, " "), got, want)
		}
	}

	expect(must("", "put", "foo/a", "1"), "OK\n", "put")
	must("", "put", "foo/b", "2")
	must("", "put", "bar", "3")
	expect(must("", "get", "--prefix", "foo/"), "foo/a\n1\nfoo/b\n2\n", "get --prefix foo/")
	expect(must("", "get", "--prefix", "foo/", "--keys-only"), "foo/a\n\nfoo/b\n\n", "get --prefix --keys-only")
	if out := must("", "get", "foo/", "--prefix", "--count-only", "-w", "fields"); !strings.Contains(out, "\"Count\" : 2\n") {
		t.Fatalf("get --count-only -w fields: %s", out)
	}

	var get struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
		Count int64 `json:"count"`
	}
	if err := json.Unmarshal([]byte(must("", "get", "--prefix", "foo/", "-w", "json")), &get); err != nil || get.Count != 2 || get.Header.Revision != 4 {
		t.Fatalf("get -w json: %+v %v", get, err)
	}

	txn := "value(\"foo/a\") = \"1\"\n\nput foo/a 10\n\nget foo/a\n\n"
	expect(must(txn, "txn", "-w", "simple"), "SUCCESS\n\nOK\n", "txn")
	expect(must(txn, "txn", "-w", "simple"), "FAILURE\n\nfoo/a\n10\n", "txn again")
	expect(must("", "del", "--prefix", "foo/"), "2\n", "del --prefix")

	expect(must("", "compaction", "3"), "compacted revision 3\n", "compaction")
	out, err := run("", "get", "bar", "--rev=2")
	if err == nil || !strings.Contains(out, "etcdserver: mvcc: required revision has been compacted") {
		t.Fatalf("get below the compaction: %v\n%s", err, out)
	}

	var st []struct {
		Endpoint string `json:"Endpoint"`
		Status   struct {
			Version string `json:"version"`
			Leader  uint64 `json:"leader"`
			DbSize  int64  `json:"dbSize"`
		} `json:"Status"`
	}
	if err := json.Unmarshal([]byte(must("", "endpoint", "status", "-w", "json")), &st); err != nil || len(st) != 1 ||
		st[0].Status.Leader != c.members[0].MemberID() || st[0].Status.Version == "" || st[0].Status.DbSize <= 0 {
		t.Fatalf("endpoint status: %+v %v", st, err)
	}
	if out := must("", "endpoint", "health"); !strings.Contains(out, "is healthy") {
		t.Fatalf("endpoint health: %s", out)
	}
	if out := must("", "member", "list"); !strings.Contains(out, "m0") || !strings.Contains(out, c.members[0].ClientURLs()[0]) {
		t.Fatalf("member list: %s", out)
	}
	if out := must("", "alarm", "list"); out != "" {
		t.Fatalf("alarm list: %q", out)
	}

	out, err = run("", "defrag")
	if err != nil || !strings.Contains(out, "Finished defragmenting etcd member") {
		t.Fatalf("defrag: %v\n%s", err, out)
	}

	path := filepath.Join(t.TempDir(), "snap.db")
	out, err = run("", "snapshot", "save", path)
	switch {
	case err != nil:
		t.Fatalf("snapshot save: %v\n%s", err, out)
	case !strings.Contains(out, "Snapshot saved at "+path):
		t.Fatalf("snapshot save: %s", out)
	}

	testEtcdctlWatchLease(t, bin, ep, must)
	testEtcdctlLockElect(t, bin, ep, must)
}

// testEtcdctlLockElect runs etcdctl lock (with a command) and elect (in
// the background, campaigning).
func testEtcdctlLockElect(t *testing.T, bin, ep string, must func(stdin string, args ...string) string) {
	if out := must("", "lock", "mylock", "echo", "locked"); out != "locked\n" {
		t.Fatalf("etcdctl lock mylock echo locked: %q", out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--endpoints="+ep, "elect", "myelection", "leader1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	for len(got) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("etcdctl elect ended; output %q", got)
			}
			got = append(got, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("etcdctl elect: output so far %q", got)
		}
	}
	if !strings.HasPrefix(got[0], "myelection/") || got[1] != "leader1" {
		t.Fatalf("etcdctl elect output %q", got)
	}
	if out := must("", "get", "--prefix", "myelection/", "--print-value-only"); out != "leader1\n" {
		t.Fatalf("election key: %q", out)
	}
	cancel()
}

// testEtcdctlWatchLease drives watch and the lease commands with etcdctl.
func testEtcdctlWatchLease(t *testing.T, bin, ep string, must func(stdin string, args ...string) string) {
	var put struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(must("", "put", "wfoo", "0", "-w", "json")), &put); err != nil || put.Header.Revision == 0 {
		t.Fatalf("put -w json: %+v %v", put, err)
	}
	// etcdctl watch in the background, from the next revision so that
	// no event is missed while it connects.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--endpoints="+ep, "watch", "wfoo", fmt.Sprintf("--rev=%d", put.Header.Revision+1))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	must("", "put", "wfoo", "bar")
	must("", "del", "wfoo")
	var got []string
	for len(got) < 5 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("etcdctl watch ended; output so far %q", got)
			}
			got = append(got, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("etcdctl watch: output so far %q", got)
		}
	}
	if strings.Join(got, "\n") != "PUT\nwfoo\nbar\nDELETE\nwfoo" {
		t.Fatalf("etcdctl watch output %q", got)
	}
	cancel()

	out := must("", "lease", "grant", "60")
	m := regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\(60s\)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lease grant: %q", out)
	}
	id := m[1]
	must("", "put", "lfoo", "1", "--lease="+id)
	if out := must("", "lease", "keep-alive", "--once", id); out != "lease "+id+" keepalived with TTL(60)\n" {
		t.Fatalf("lease keep-alive --once: %q", out)
	}
	out = must("", "lease", "timetolive", "--keys", id)
	if !regexp.MustCompile(`^lease ` + id + ` granted with TTL\(60s\), remaining\(\d+s\), attached keys\(\[lfoo\]\)\n$`).MatchString(out) {
		t.Fatalf("lease timetolive --keys: %q", out)
	}
	if out := must("", "lease", "list"); !strings.Contains(out, "found 1 leases\n"+id+"\n") {
		t.Fatalf("lease list: %q", out)
	}
	if out := must("", "lease", "revoke", id); out != "lease "+id+" revoked\n" {
		t.Fatalf("lease revoke: %q", out)
	}
	if out := must("", "get", "lfoo"); out != "" {
		t.Fatalf("get of a revoked lease's key: %q", out)
	}
	if out := must("", "lease", "timetolive", id); out != "lease "+id+" already expired\n" {
		t.Fatalf("lease timetolive of a revoked lease: %q", out)
	}
}

// TestEtcdctlMembership drives membership changes and leadership
// transfer of a three-member cluster with the real etcdctl: member add
// --learner, starting the learner, member promote, move-leader and
// member remove.
func TestEtcdctlMembership(t *testing.T) {
	bin := etcdctlPath(t)
	c := newCluster(t, 3, engines()[0], nil)
	var gone = -1 // the removed member, no longer an endpoint
	ctl := etcdctl{t: t, bin: bin, log: true, endpoints: func() []string {
		var eps []string
		for i := range c.members {
			if i != gone {
				eps = append(eps, c.endpoint(i))
			}
		}
		return eps
	}}
	run := func(args ...string) (string, error) { return ctl.run("", args...) }
	must := func(args ...string) string { return ctl.must("", args...) }

	peer := "http://" + freePorts(t, 1)[0]
	out := must("member", "add", "m3", "--learner", "--peer-urls="+peer)
	// etcdctl prints the IDs as %16x: padded with spaces, not zeros.
	m := regexp.MustCompile(`Member +([0-9a-f]+) added as learner to cluster +([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, `ETCD_INITIAL_CLUSTER_STATE="existing"`) || !strings.Contains(out, "m3="+peer) {
		t.Fatalf("member add --learner: %s", out)
	}
	id := m[1]
	if want := fmt.Sprintf("%x", c.members[0].ClusterID()); m[2] != want {
		t.Fatalf("member add: cluster %s, want %s", m[2], want)
	}
	m3 := c.startMember("m3", peer, filepath.Join(t.TempDir(), "m3"))
	if fmt.Sprintf("%x", m3.MemberID()) != id {
		t.Fatalf("learner ID %x, want %s", m3.MemberID(), id)
	}
	if out := must("member", "list"); !strings.Contains(out, id+", started, m3, "+peer) || !strings.Contains(out, ", true\n") {
		t.Fatalf("member list with a learner: %s", out)
	}
	// The learner may still be catching up: etcd refuses to promote it
	// until it is ("can only promote a learner member which is in sync
	// with leader").
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := run("member", "promote", id)
		if err == nil {
			if !strings.Contains(out, fmt.Sprintf("Member %16s promoted in cluster", id)) {
				t.Fatalf("member promote: %s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member promote: %v\n%s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := must("member", "list"); strings.Contains(out, ", true\n") {
		t.Fatalf("member list after promote still shows a learner: %s", out)
	}

	lead := c.leader()
	target := (lead + 1) % len(c.members)
	out = must("move-leader", fmt.Sprintf("%x", c.members[target].MemberID()))
	if want := fmt.Sprintf("Leadership transferred from %x to %x", c.members[lead].MemberID(), c.members[target].MemberID()); !strings.Contains(out, want) {
		t.Fatalf("move-leader: %s, want %q", out, want)
	}
	if got := c.leader(); got != target {
		t.Fatalf("leader after move-leader: m%d, want m%d", got, target)
	}

	victim := (target + 1) % len(c.members)
	vid := fmt.Sprintf("%x", c.members[victim].MemberID())
	out = must("member", "remove", vid)
	if !strings.Contains(out, fmt.Sprintf("Member %16s removed from cluster", vid)) {
		t.Fatalf("member remove: %s", out)
	}
	gone = victim
	if out := must("member", "list"); strings.Contains(out, vid) || strings.Count(out, "\n") != 3 {
		t.Fatalf("member list after remove: %s", out)
	}
	select {
	case <-c.members[victim].StopNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("the removed member did not stop")
	}

	// Move a stopped follower to a new peer URL, then restart it there.
	mover := -1
	for i := range c.members {
		if i != target && i != victim && mover < 0 {
			mover = i
		}
	}
	mid := fmt.Sprintf("%x", c.members[mover].MemberID())
	if err := c.members[mover].Close(); err != nil {
		t.Fatal(err)
	}
	moved := "http://" + freePorts(t, 1)[0]
	eps := []string{c.endpoint(target)}
	upd := exec.Command(bin, "--endpoints="+strings.Join(eps, ","), "--command-timeout=10s", "member", "update", mid, "--peer-urls="+moved)
	out2, err := upd.CombinedOutput()
	t.Logf("etcdctl member update %s --peer-urls=%s: %v\n%s", mid, moved, err, out2)
	if err != nil || !strings.Contains(string(out2), fmt.Sprintf("Member %16s updated in cluster", mid)) {
		t.Fatalf("member update: %v\n%s", err, out2)
	}
	c.restartAt(mover, moved)
	if out := must("member", "list"); !strings.Contains(out, mid+", started, "+c.cfgs[mover].Name+", "+moved) {
		t.Fatalf("member list after update: %s", out)
	}
	must("endpoint", "health")
}

// TestEtcdctlLeaseIDs is the reported case of a revoked lease's ID handed
// out again, on every engine: the second grant gets a new ID, a put naming
// the revoked lease fails as etcd's does, and history keeps the first
// lease on the key it had.
func TestEtcdctlLeaseIDs(t *testing.T) {
	bin := etcdctlPath(t)
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, 1, eng, nil)
			ctl := etcdctl{t: t, bin: bin, endpoints: func() []string { return []string{c.endpoint(0)} }}
			granted := regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\(600s\)\n$`)
			grant := func() string {
				t.Helper()
				out := ctl.must("", "lease", "grant", "600")
				m := granted.FindStringSubmatch(out)
				if m == nil {
					t.Fatalf("lease grant: %q", out)
				}
				return m[1]
			}
			a := grant()
			ctl.must("", "put", "a", "1", "--lease="+a)
			if out := ctl.must("", "lease", "revoke", a); out != fmt.Sprintf("lease %s revoked\n", a) {
				t.Fatalf("lease revoke: %q", out)
			}
			b := grant()
			if a == b {
				t.Fatalf("the revoked lease's ID %s was granted again", a)
			}
			out, err := ctl.run("", "put", "b", "2", "--lease="+a)
			if err == nil || !strings.Contains(out, "etcdserver: requested lease not found") {
				t.Fatalf("put on the revoked lease: %v\n%s", err, out)
			}
			if out := ctl.must("", "lease", "timetolive", b, "--keys"); !strings.HasSuffix(out, "attached keys([])\n") {
				t.Fatalf("lease timetolive %s --keys: %q", b, out)
			}
			var get struct {
				Kvs []struct {
					Lease int64 `json:"lease"`
				} `json:"kvs"`
			}
			if err := json.Unmarshal([]byte(ctl.must("", "get", "a", "--rev=2", "-w", "json")), &get); err != nil || len(get.Kvs) != 1 ||
				fmt.Sprintf("%x", get.Kvs[0].Lease) != a {
				t.Fatalf("get a --rev=2: %+v %v, want lease %s", get, err, a)
			}
		})
	}
}
