package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/internal/freeport"
)

// The auth data set of TestEtcdAuthRoundTrip: root, a user with two roles,
// a user without password; one role with a prefix, one with a range.
const (
	rootPassword  = "root-pw"
	alicePassword = "alice-pw"
)

// buildEtcdAuthData fills an embedded etcd with users and roles, enables
// auth and returns its snapshot and what root reads of the auth store.
func buildEtcdAuthData(t *testing.T) (snapshot, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	m := startEtcd(t, "etcd", filepath.Join(dir, "etcd"), "")
	defer m.stop()
	cli := m.cli
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cli.Put(ctx, "/app/one", "1"))
	must(cli.UserAdd(ctx, "root", rootPassword))
	must(cli.RoleAdd(ctx, "root"))
	must(cli.UserGrantRole(ctx, "root", "root"))
	must(cli.RoleAdd(ctx, "app"))
	must(cli.RoleGrantPermission(ctx, "app", "/app/", clientv3.GetPrefixRangeEnd("/app/"), clientv3.PermissionType(clientv3.PermReadWrite)))
	must(cli.RoleAdd(ctx, "reader"))
	must(cli.RoleGrantPermission(ctx, "reader", "a", "c", clientv3.PermissionType(clientv3.PermRead)))
	must(cli.UserAdd(ctx, "alice", alicePassword))
	must(cli.UserGrantRole(ctx, "alice", "app"))
	must(cli.UserGrantRole(ctx, "alice", "reader"))
	must(cli.UserAddWithOptions(ctx, "bob", "", &clientv3.UserAddOptions{NoPassword: true}))
	must(cli.UserGrantRole(ctx, "bob", "reader"))
	must(cli.AuthEnable(ctx))
	root := loginClient(t, cli.Endpoints(), "root", rootPassword)
	defer root.Close()
	want = authAnswers(t, root)
	if !strings.Contains(want, "enabled true") {
		t.Fatalf("etcd's auth store:\n%s", want)
	}
	snapshot = filepath.Join(dir, "etcd.snapshot")
	rc, err := root.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return snapshot, want
}

// loginClient is a client of endpoints logged in as user.
func loginClient(t *testing.T, endpoints []string, user, password string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Username: user, Password: password,
		DialTimeout: 20 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	return cli
}

// authAnswers is what root reads of the auth store: status and revision,
// every user with its roles, every role with its permissions.
func authAnswers(t *testing.T, root *clientv3.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	st, err := root.AuthStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "enabled %v revision %d\n", st.Enabled, st.AuthRevision)
	users, err := root.UserList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users.Users {
		g, err := root.UserGet(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "user %s roles %v\n", u, g.Roles)
	}
	roles, err := root.RoleList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles.Roles {
		g, err := root.RoleGet(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "role %s", r)
		for _, p := range g.Perm {
			fmt.Fprintf(&b, " %s[%q,%q)", p.PermType, p.Key, p.RangeEnd)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// checkAuthServes checks that a server holding the auth data set answers
// root as want, checks alice's passwords and permissions and refuses bob's
// login and anonymous writes; with a real etcdctl, also its answers to
// root (returned, "" without one).
func checkAuthServes(t *testing.T, what string, endpoints []string, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := loginClient(t, endpoints, "root", rootPassword)
	defer root.Close()
	if got := authAnswers(t, root); got != want {
		t.Fatalf("%s: auth store:\n%s\nwant:\n%s", what, got, want)
	}
	alice := loginClient(t, endpoints, "alice", alicePassword)
	defer alice.Close()
	if _, err := alice.Put(ctx, "/app/two", "2"); err != nil {
		t.Fatalf("%s: alice puts inside /app/: %v", what, err)
	}
	if g, err := alice.Get(ctx, "b"); err != nil || g.Count != 0 {
		t.Fatalf("%s: alice reads b: %v", what, err)
	}
	if _, err := alice.Put(ctx, "/other", "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("%s: alice puts outside /app/: %v, want %v", what, err, rpctypes.ErrPermissionDenied)
	}
	if _, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Username: "alice", Password: "wrong",
		DialTimeout: 20 * time.Second, Logger: zap.NewNop()}); !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("%s: alice with a wrong password: %v, want %v", what, err, rpctypes.ErrAuthFailed)
	}
	if _, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Username: "bob", Password: "any",
		DialTimeout: 20 * time.Second, Logger: zap.NewNop()}); err == nil {
		t.Fatalf("%s: bob (no password) logged in with a password", what)
	}
	anon, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 20 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Put(ctx, "/app/three", "3"); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Fatalf("%s: anonymous put: %v, want %v", what, err, rpctypes.ErrUserEmpty)
	}
	bin := os.Getenv("STRATA_ETCDCTL")
	if bin == "" {
		bin, _ = exec.LookPath("etcdctl")
	}
	if bin == "" {
		t.Logf("%s: etcdctl checks skipped: set STRATA_ETCDCTL (or put etcdctl on PATH)", what)
		return ""
	}
	var out strings.Builder
	for _, args := range [][]string{{"auth", "status"}, {"user", "list"}, {"user", "get", "alice"},
		{"role", "list"}, {"role", "get", "app"}, {"role", "get", "reader"}} {
		cmd := exec.Command(bin, append([]string{"--endpoints=" + strings.Join(endpoints, ","),
			"--user=root:" + rootPassword, "--command-timeout=10s"}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: etcdctl %s: %v\n%s", what, strings.Join(args, " "), err, b)
		}
		fmt.Fprintf(&out, "$ etcdctl %s\n%s", strings.Join(args, " "), b)
	}
	if !strings.Contains(out.String(), "Authentication Status: true") {
		t.Fatalf("%s: etcdctl:\n%s", what, out.String())
	}
	return out.String()
}

// TestEtcdAuthRoundTrip restores an etcd snapshot with auth enabled,
// users and roles into Strata on every engine: root, alice and bob get
// what etcd gave them, and the auth revision is etcd's. The member's
// export, restored by etcdutl, is served by etcd with the same auth store
// (and by the real etcd when STRATA_ETCD names it); the real etcdctl, when
// there is one, reads the same from Strata and from etcd.
func TestEtcdAuthRoundTrip(t *testing.T) {
	snap, want := buildEtcdAuthData(t)
	for _, backend := range backends.Registry().Names() {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			restored := filepath.Join(dir, "restored")
			if err := run([]string{"snapshot", "restore", snap, "--name", "r", "--data-dir", restored, "--backend", backend}); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "export.db")
			if err := run([]string{"snapshot", "export", "--data-dir", restored, out}); err != nil {
				t.Fatal(err)
			}
			s, cli := startMember(t, "r", restored, backend)
			fromStrata := checkAuthServes(t, "strata", cli.Endpoints(), want)
			stopMember(t, s, cli)

			addrs, err := freeport.Addrs(1)
			if err != nil {
				t.Fatal(err)
			}
			peer := "http://" + addrs[0]
			etcdDir := filepath.Join(dir, "etcd")
			etcdutlRestore(t, out, "back", etcdDir, peer)
			m := startEtcd(t, "back", etcdDir, peer)
			fromEtcd := checkAuthServes(t, "etcd from the export", m.cli.Endpoints(), want)
			m.stop()
			if fromStrata != fromEtcd {
				t.Fatalf("etcdctl on Strata:\n%s\non etcd from the export:\n%s", fromStrata, fromEtcd)
			}
			if bin := os.Getenv("STRATA_ETCD"); bin != "" {
				real := startRealEtcd(t, bin, out, func(c *clientv3.Config) { c.Username, c.Password = "root", rootPassword })
				if got := checkAuthServes(t, "real etcd from the export", real.Endpoints(), want); got != fromStrata {
					t.Fatalf("etcdctl on Strata:\n%s\non real etcd from the export:\n%s", fromStrata, got)
				}
			}
		})
	}
}
