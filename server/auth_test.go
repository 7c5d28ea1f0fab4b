package server_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/metadata"

	"github.com/strata-kv/strata/server"
)

// authTweak makes members hash passwords at bcrypt's lowest cost, so that
// tests stay fast.
func authTweak(cfg *server.Config) { cfg.BcryptCost = bcrypt.MinCost }

// userClient returns a clientv3 client of the members logged in as
// user, closed at the end of the test.
func (c *cluster) userClient(user, password string, members ...int) *clientv3.Client {
	c.t.Helper()
	var eps []string
	if len(members) == 0 {
		eps = c.endpoints()
	}
	for _, i := range members {
		eps = append(eps, c.endpoint(i))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		Username:    user,
		Password:    password,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatalf("log in as %s: %v", user, err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// setUpAuth makes etcd's usual set-up: a root user with the root role, a
// user "app" with readwrite on the prefix /app/, and enables auth.
func setUpAuth(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx := ctxT(t)
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "app", "apppw"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "app-rw"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "app-rw", "/app/", clientv3.GetPrefixRangeEnd("/app/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserGrantRole(ctx, "app", "app-rw"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("auth set-up step %d: %v", i, err)
		}
	}
}

// wantErr fails unless err is want (clientv3 turns etcd's gRPC errors back
// into rpctypes errors by their text).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) && (err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(want)) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// TestAuthRBAC drives etcd's RBAC through clientv3 on one member: the
// management errors, a user confined to a prefix (puts, gets, txn
// branches, watches, leases), anonymous requests refused, root allowed
// everything, and auth disabled again; then auth survives a restart.
func TestAuthRBAC(t *testing.T) {
	c := newCluster(t, 1, engines()[0], authTweak)
	cli := c.client()
	ctx := ctxT(t)

	// Before auth: enabling needs a root user with the root role.
	_, err := cli.AuthEnable(ctx)
	wantErr(t, "enable without root", err, rpctypes.ErrRootUserNotExist)
	if _, err := cli.UserAdd(ctx, "root", "rootpw"); err != nil {
		t.Fatal(err)
	}
	_, err = cli.AuthEnable(ctx)
	wantErr(t, "enable without root role", err, rpctypes.ErrRootRoleNotExist)
	_, err = cli.UserAdd(ctx, "root", "x")
	wantErr(t, "user add twice", err, rpctypes.ErrUserAlreadyExist)
	_, err = cli.UserAdd(ctx, "", "x")
	wantErr(t, "user add empty", err, rpctypes.ErrUserEmpty)
	_, err = cli.RoleAdd(ctx, "")
	wantErr(t, "role add empty", err, rpctypes.ErrRoleEmpty)
	_, err = cli.UserGrantRole(ctx, "nobody", "root")
	wantErr(t, "grant to unknown user", err, rpctypes.ErrUserNotFound)
	_, err = cli.UserGrantRole(ctx, "root", "nosuchrole")
	wantErr(t, "grant unknown role", err, rpctypes.ErrRoleNotFound)
	_, err = cli.UserRevokeRole(ctx, "root", "nosuchrole")
	wantErr(t, "revoke ungranted role", err, rpctypes.ErrRoleNotGranted)
	if _, err := cli.RoleAdd(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	_, err = cli.RoleRevokePermission(ctx, "r", "a", "")
	wantErr(t, "revoke ungranted permission", err, rpctypes.ErrPermissionNotGranted)
	_, err = cli.RoleGrantPermission(ctx, "r", "b", "a", clientv3.PermissionType(clientv3.PermRead))
	wantErr(t, "grant an empty range", err, rpctypes.ErrInvalidAuthMgmt)
	if _, err := cli.RoleDelete(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserDelete(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	setUpAuth(t, cli)

	st, err := cli.AuthStatus(ctx)
	if err != nil || !st.Enabled {
		t.Fatalf("auth status after enable: %v %v", st, err)
	}

	// Anonymous requests are refused.
	_, err = cli.Put(ctx, "/app/x", "1")
	wantErr(t, "anonymous put", err, rpctypes.ErrUserEmpty)
	_, err = cli.Get(ctx, "/app/x")
	wantErr(t, "anonymous get", err, rpctypes.ErrUserEmpty)
	_, err = cli.Grant(ctx, 10)
	wantErr(t, "anonymous lease grant", err, rpctypes.ErrUserEmpty)
	_, err = cli.UserList(ctx)
	wantErr(t, "anonymous user list", err, rpctypes.ErrUserEmpty)

	// Wrong password.
	bad, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(), Username: "app", Password: "wrong", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if bad != nil {
		bad.Close()
	}
	wantErr(t, "wrong password", err, rpctypes.ErrAuthFailed)

	app := c.userClient("app", "apppw")
	root := c.userClient("root", "rootpw")

	// Inside the prefix.
	if _, err := app.Put(ctx, "/app/x", "1"); err != nil {
		t.Fatal(err)
	}
	if r, err := app.Get(ctx, "/app/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("app get prefix: %v %v", r, err)
	}
	if _, err := app.Txn(ctx).If(clientv3.Compare(clientv3.Version("/app/x"), ">", 0)).
		Then(clientv3.OpPut("/app/y", "2")).Else(clientv3.OpGet("/app/z")).Commit(); err != nil {
		t.Fatal(err)
	}
	// Outside it, every way.
	_, err = app.Put(ctx, "/other", "1")
	wantErr(t, "put outside", err, rpctypes.ErrPermissionDenied)
	_, err = app.Get(ctx, "/other")
	wantErr(t, "get outside", err, rpctypes.ErrPermissionDenied)
	_, err = app.Get(ctx, "/app/", clientv3.WithFromKey())
	wantErr(t, "get from the prefix on", err, rpctypes.ErrPermissionDenied)
	_, err = app.Delete(ctx, "/", clientv3.WithPrefix())
	wantErr(t, "delete a wider prefix", err, rpctypes.ErrPermissionDenied)
	_, err = app.Txn(ctx).If().Then(clientv3.OpPut("/app/a", "1")).Else(clientv3.OpPut("/other", "1")).Commit()
	wantErr(t, "txn else branch outside", err, rpctypes.ErrPermissionDenied)
	_, err = app.Txn(ctx).If(clientv3.Compare(clientv3.Value("/other"), "=", "1")).Then(clientv3.OpGet("/app/x")).Commit()
	wantErr(t, "txn compare outside", err, rpctypes.ErrPermissionDenied)
	_, err = app.Txn(ctx).Then(clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet("/other")}, nil)).Commit()
	wantErr(t, "nested read-only txn outside", err, rpctypes.ErrPermissionDenied)
	_, err = app.Txn(ctx).Then(clientv3.OpPut("/app/b", "1"), clientv3.OpTxn(nil, nil, []clientv3.Op{clientv3.OpDelete("/other")})).Commit()
	wantErr(t, "nested txn outside", err, rpctypes.ErrPermissionDenied)
	if r, err := root.Get(ctx, "/app/b"); err != nil || len(r.Kvs) != 0 {
		t.Fatalf("a denied txn changed something: %v %v", r, err)
	}
	_, err = app.Compact(ctx, 1)
	wantErr(t, "compact by a user", err, rpctypes.ErrPermissionDenied)
	_, err = app.Defragment(ctx, c.endpoint(0))
	wantErr(t, "defragment by a user", err, rpctypes.ErrPermissionDenied)
	_, err = app.Downgrade(ctx, clientv3.DowngradeValidate, "3.6.0")
	wantErr(t, "downgrade by a user", err, rpctypes.ErrPermissionDenied)
	_, err = app.MemberAdd(ctx, []string{"http://127.0.0.1:1"})
	wantErr(t, "member add by a user", err, rpctypes.ErrPermissionDenied)
	_, err = app.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: 1, Alarm: pb.AlarmType_NOSPACE})
	wantErr(t, "alarm disarm by a user", err, rpctypes.ErrPermissionDenied)
	if _, err := app.AlarmList(ctx); err != nil {
		t.Fatalf("alarm list by a user: %v", err)
	}
	_, err = app.UserList(ctx)
	wantErr(t, "user list by a user", err, rpctypes.ErrPermissionDenied)
	if r, err := app.UserGet(ctx, "app"); err != nil || len(r.Roles) != 1 {
		t.Fatalf("a user gets itself: %v %v", r, err)
	}
	if _, err := app.RoleGet(ctx, "app-rw"); err != nil {
		t.Fatalf("a user gets its role: %v", err)
	}
	_, err = app.RoleGet(ctx, "root")
	wantErr(t, "role get of another role", err, rpctypes.ErrPermissionDenied)

	// Watches: inside delivers, outside is refused at creation.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	in := app.Watch(wctx, "/app/", clientv3.WithPrefix())
	out := app.Watch(wctx, "/", clientv3.WithPrefix())
	if _, err := app.Put(ctx, "/app/w", "1"); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-in:
		if len(wr.Events) != 1 || string(wr.Events[0].Kv.Key) != "/app/w" {
			t.Fatalf("watch inside: %+v", wr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the permitted watch")
	}
	select {
	case wr := <-out:
		if !wr.Canceled || wr.Err() == nil {
			t.Fatalf("watch outside: %+v", wr)
		}
		// etcd's cancel reason is the gRPC error's whole text.
		if wr.Err().Error() != rpctypes.ErrGRPCPermissionDenied.Error() {
			t.Fatalf("watch outside: %v", wr.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the denied watch was not canceled")
	}

	// Leases: a user revokes only a lease whose keys it may write.
	l, err := root.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Put(ctx, "/other", "1", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	_, err = app.Revoke(ctx, l.ID)
	wantErr(t, "revoke a lease of others' keys", err, rpctypes.ErrPermissionDenied)
	_, err = app.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
	wantErr(t, "ttl with others' keys", err, rpctypes.ErrPermissionDenied)
	if _, err := app.TimeToLive(ctx, l.ID); err != nil {
		t.Fatalf("ttl without keys: %v", err)
	}
	_, err = app.Put(ctx, "/app/l", "1", clientv3.WithLease(l.ID))
	wantErr(t, "attach a lease of others' keys", err, rpctypes.ErrPermissionDenied)

	// A permission change: the user's old permission is gone.
	if _, err := root.RoleRevokePermission(ctx, "app-rw", "/app/", clientv3.GetPrefixRangeEnd("/app/")); err != nil {
		t.Fatal(err)
	}
	_, err = app.Get(ctx, "/app/x")
	wantErr(t, "get after revoke", err, rpctypes.ErrPermissionDenied)
	if _, err := root.RoleGrantPermission(ctx, "app-rw", "/app/", clientv3.GetPrefixRangeEnd("/app/"), clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
		t.Fatal(err)
	}

	// Root may do everything.
	if _, err := root.Put(ctx, "/other", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Compact(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Status(ctx, c.endpoint(0)); err != nil {
		t.Fatal(err)
	}
	_, err = root.UserDelete(ctx, "root")
	wantErr(t, "delete root while enabled", err, rpctypes.ErrInvalidAuthMgmt)
	_, err = root.UserRevokeRole(ctx, "root", "root")
	wantErr(t, "revoke root's root role", err, rpctypes.ErrInvalidAuthMgmt)

	// Auth survives a restart (simple tokens do not: they live in memory).
	if err := c.members[0].Close(); err != nil {
		t.Fatal(err)
	}
	m, err := server.Start(c.cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	c.members[0] = m
	<-m.ReadyNotify()
	cli = c.client() // the member listens on a new port
	_, err = cli.Get(ctx, "/app/x")
	wantErr(t, "anonymous get after restart", err, rpctypes.ErrUserEmpty)
	root = c.userClient("root", "rootpw")
	if r, err := root.UserList(ctx); err != nil || len(r.Users) != 2 {
		t.Fatalf("users after restart: %v %v", r, err)
	}
	app = c.userClient("app", "apppw")
	if _, err := app.Get(ctx, "/app/x"); err != nil {
		t.Fatal(err)
	}

	// Disabling restores anonymous access.
	if _, err := root.AuthDisable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/other", "3"); err != nil {
		t.Fatalf("anonymous put after disable: %v", err)
	}
	// clientv3 logs in, is told auth is off, and carries on without a
	// token.
	c.userClient("app", "apppw")
}

// TestAuthSnapshotRestore: a follower that missed the auth set-up catches
// up from a raft snapshot, and then enforces it, serving the user through
// itself.
func TestAuthSnapshotRestore(t *testing.T) {
	c := newCluster(t, 3, engines()[0], func(cfg *server.Config) {
		authTweak(cfg)
		cfg.SnapshotCount, cfg.SnapshotCatchUpEntries = 20, 20
	})
	ctx := ctxT(t)
	lag := (c.leader() + 1) % 3
	if err := c.members[lag].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[lag] = nil
	var up []int
	for i := range c.members {
		if i != lag {
			up = append(up, i)
		}
	}
	cli := c.client(up...)
	setUpAuth(t, cli)
	root := c.userClient("root", "rootpw", up...)
	for i := range 50 {
		if _, err := root.Put(ctx, "/app/x", strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range up {
		if err := c.members[i].Node().Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	m, err := server.Start(c.cfgs[lag])
	if err != nil {
		t.Fatal(err)
	}
	c.members[lag] = m
	<-m.ReadyNotify()
	waitFor(t, "the follower to restore a snapshot", func() bool { return m.Node().SnapshotRestores() > 0 })
	if !m.Node().Auth().Enabled() {
		t.Fatal("auth is not enabled on the restored follower")
	}
	app := c.userClient("app", "apppw", lag)
	if r, err := app.Get(ctx, "/app/x", clientv3.WithSerializable()); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("app get on the restored follower: %v %v", r, err)
	}
	_, err = app.Get(ctx, "/other", clientv3.WithSerializable())
	wantErr(t, "get outside on the restored follower", err, rpctypes.ErrPermissionDenied)
	_, err = c.client(lag).Get(ctx, "/app/x", clientv3.WithSerializable())
	wantErr(t, "anonymous get on the restored follower", err, rpctypes.ErrUserEmpty)
}

// TestAuthJWT: JWT tokens (RS256) any member verifies; a token issued
// before a permission change fails with "revision of auth store is old"
// (clientv3 then logs in again by itself); a forged token is refused.
func TestAuthJWT(t *testing.T) {
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	priv := filepath.Join(dir, "jwt.key")
	pub := filepath.Join(dir, "jwt.pub")
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, 3, engines()[0], func(cfg *server.Config) {
		authTweak(cfg)
		cfg.AuthToken = "jwt,sign-method=RS256,priv-key=" + priv + ",pub-key=" + pub + ",ttl=10m"
	})
	ctx := ctxT(t)
	setUpAuth(t, c.client())

	// A token from one member works on another.
	resp, err := c.client(0).Auth.Authenticate(ctx, "app", "apppw")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(resp.Token, ".") != 2 {
		t.Fatalf("not a JWT: %q", resp.Token)
	}
	kv := pb.NewKVClient(c.client(1).ActiveConnection())
	withToken := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, tok)
	}
	if _, err := kv.Put(withToken(resp.Token), &pb.PutRequest{Key: []byte("/app/j"), Value: []byte("1")}); err != nil {
		t.Fatalf("put with the token on another member: %v", err)
	}
	if _, err := kv.Range(withToken(resp.Token), &pb.RangeRequest{Key: []byte("/other")}); !errors.Is(err, rpctypes.ErrGRPCPermissionDenied) {
		t.Fatalf("range outside: %v", err)
	}
	if _, err := kv.Range(withToken(resp.Token+"x"), &pb.RangeRequest{Key: []byte("/app/j")}); !errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken) {
		t.Fatalf("forged token: %v", err)
	}

	// A permission change makes the token old.
	root := c.userClient("root", "rootpw")
	if _, err := root.RoleGrantPermission(ctx, "app-rw", "/extra", "", clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(withToken(resp.Token), &pb.PutRequest{Key: []byte("/app/j"), Value: []byte("2")}); !errors.Is(err, rpctypes.ErrGRPCAuthOldRevision) {
		t.Fatalf("put with a token older than a permission change: %v", err)
	}
	if _, err := kv.Range(withToken(resp.Token), &pb.RangeRequest{Key: []byte("/app/j")}); !errors.Is(err, rpctypes.ErrGRPCAuthOldRevision) {
		t.Fatalf("range with a token older than a permission change: %v", err)
	}
	// clientv3 logs in again on that error.
	app := c.userClient("app", "apppw", 2)
	if _, err := root.RoleGrantPermission(ctx, "app-rw", "/extra2", "", clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Put(ctx, "/app/j", "3"); err != nil {
		t.Fatalf("clientv3 after a permission change: %v", err)
	}
}

// TestAuthLock: the Lock service acts with the caller's identity: a user
// locks under its prefix (on its own lease) and is refused elsewhere.
func TestAuthLock(t *testing.T) {
	c := newCluster(t, 1, engines()[0], authTweak)
	setUpAuth(t, c.client())
	ctx := ctxT(t)
	app := c.userClient("app", "apppw")
	l, err := app.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	lc := v3lockpb.NewLockClient(app.ActiveConnection())
	got, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("/app/lock"), Lease: int64(l.ID)})
	if err != nil || !strings.HasPrefix(string(got.Key), "/app/lock/") {
		t.Fatalf("lock under the user's prefix: %v %v", got, err)
	}
	if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: got.Key}); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	_, err = lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("/other/lock"), Lease: int64(l.ID)})
	wantErr(t, "lock outside the user's prefix", err, rpctypes.ErrPermissionDenied)
	anon := v3lockpb.NewLockClient(c.client().ActiveConnection())
	_, err = anon.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("/app/lock"), Lease: int64(l.ID)})
	wantErr(t, "anonymous lock", err, rpctypes.ErrUserEmpty)
}
