package server_test

import (
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"time"

	"github.com/strata-kv/strata/server"
)

// TestAuthCertCN: with --client-cert-auth and no token, the common name
// of the client's certificate is the user (etcd's rule); a token, when
// given, wins.
func TestAuthCertCN(t *testing.T) {
	p := newPKI(t)
	appCert := p.ca.Issue("app", "app")
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		authTweak(cfg)
		cfg.ListenClientURLs = []string{"https://127.0.0.1:0"}
		cfg.ClientTLSInfo = p.clientInfo()
	})
	ep := c.endpoint(0)
	root := p.tlsClient(t, ep, p.client) // CN root
	setUpAuth(t, root)
	ctx := ctxT(t)

	// Root by its certificate alone.
	if _, err := root.Put(ctx, "/other", "1"); err != nil {
		t.Fatalf("put as the certificate's root: %v", err)
	}
	if r, err := root.UserList(ctx); err != nil || len(r.Users) != 2 {
		t.Fatalf("user list as the certificate's root: %v %v", r, err)
	}
	app := p.tlsClient(t, ep, appCert) // CN app
	if _, err := app.Put(ctx, "/app/x", "1"); err != nil {
		t.Fatalf("put as the certificate's app: %v", err)
	}
	_, err := app.Get(ctx, "/other")
	wantErr(t, "get outside as the certificate's app", err, rpctypes.ErrPermissionDenied)

	// A token wins over the certificate: app's certificate, root's login.
	info := transport.TLSInfo{TrustedCAFile: p.ca.CertFile, CertFile: appCert.CertFile, KeyFile: appCert.KeyFile}
	tc, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	both, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, TLS: tc, Username: "root", Password: "rootpw", DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()
	if _, err := both.Get(ctx, "/other"); err != nil {
		t.Fatalf("get with root's token over app's certificate: %v", err)
	}
}
