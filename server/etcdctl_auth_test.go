package server_test

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestEtcdctlAuth sets up etcd's RBAC with the real etcdctl on a
// three-member cluster, then uses it through a follower: a user with
// readwrite on /app/ puts, gets and watches under it and is denied
// outside (put, get, a txn branch, a watch); anonymous requests are
// refused; root may do everything; auth disable restores anonymous
// access.
func TestEtcdctlAuth(t *testing.T) {
	bin := etcdctlPath(t)
	c := newCluster(t, 3, engines()[0], authTweak)
	follower := (c.leader() + 1) % 3
	ep := c.endpoint(follower)
	ctl := etcdctl{t: t, bin: bin, endpoints: func() []string { return []string{ep} }}
	expect := func(want string, stdin string, args ...string) {
		t.Helper()
		if got := ctl.must(stdin, args...); got != want {
			t.Fatalf("etcdctl %s: %q, want %q", strings.Join(args, " "), got, want)
		}
	}
	refused := func(want string, stdin string, args ...string) {
		t.Helper()
		out, err := ctl.run(stdin, args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("etcdctl %s: %v %q, want an error %q", strings.Join(args, " "), err, out, want)
		}
	}

	expect("User root created\n", "", "user", "add", "root", "--new-user-password=rootpw")
	expect("Role app-rw created\n", "", "role", "add", "app-rw")
	expect("Role app-rw updated\n", "", "role", "grant-permission", "app-rw", "readwrite", "/app/", "--prefix")
	expect("User app created\n", "", "user", "add", "app", "--new-user-password=apppw")
	expect("Role app-rw is granted to user app\n", "", "user", "grant-role", "app", "app-rw")
	refused("etcdserver: role name not found", "", "user", "grant-role", "app", "nosuch")
	// etcdctl adds the root role and grants it to root when AuthEnable
	// answers "root user does not have root role".
	expect("Authentication Enabled\n", "", "auth", "enable")

	app, root := "--user=app:apppw", "--user=root:rootpw"
	expect("OK\n", "", app, "put", "/app/x", "1")
	expect("/app/x\n1\n", "", app, "get", "/app/x")
	expect("SUCCESS\n\nOK\n", "\nput /app/y 2\n\n\n", app, "txn", "-w", "simple")
	refused("etcdserver: permission denied", "", app, "put", "/other", "1")
	refused("etcdserver: permission denied", "", app, "get", "/other")
	refused("etcdserver: permission denied", "", app, "get", "/", "--prefix")
	refused("etcdserver: permission denied", "\nput /app/z 1\n\nput /other 1\n\n", app, "txn", "-w", "simple")
	refused("etcdserver: user name is empty", "", "get", "/app/x")
	refused("etcdserver: user name is empty", "", "put", "/app/x", "2")
	refused("etcdserver: authentication failed, invalid user ID or password", "", "--user=app:wrong", "get", "/app/x")
	refused("etcdserver: permission denied", "", app, "user", "list")

	// Watches: under the prefix events arrive; outside, the watch is
	// refused.
	if got := watchUntil(t, bin, ep, "/app/x\n1\n", app, "watch", "/app/", "--prefix", "--rev=1"); !strings.Contains(got, "PUT\n/app/x\n1") {
		t.Fatalf("etcdctl watch /app/: %q", got)
	}
	if got := watchUntil(t, bin, ep, "permission denied", app, "watch", "/other"); !strings.Contains(got, "etcdserver: permission denied") {
		t.Fatalf("etcdctl watch /other: %q", got)
	}

	expect("OK\n", "", root, "put", "/other", "1")
	expect("/other\n1\n", "", root, "get", "/other")
	expect("app\nroot\n", "", root, "user", "list")
	if out := ctl.must("", root, "role", "get", "app-rw"); !strings.Contains(out, "[/app/, /app0) (prefix /app/)") {
		t.Fatalf("role get: %q", out)
	}
	expect("Authentication Disabled\n", "", root, "auth", "disable")
	expect("/other\n1\n", "", "get", "/other")
	expect("OK\n", "", "put", "/other", "2")
}

// watchUntil runs etcdctl watch (args) against ep until its output
// (stdout and stderr) holds until, or 10 s pass, and returns the output.
func watchUntil(t *testing.T, bin, ep, until string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--endpoints=" + ep}, args...)...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(out.String(), until) {
			break
		}
	}
	cancel()
	go io.Copy(io.Discard, pr)
	<-done
	return out.String()
}
