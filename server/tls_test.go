package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/internal/certtest"
	"github.com/strata-kv/strata/internal/tlsutil"
	"github.com/strata-kv/strata/server"
)

// pki is the certificates of a TLS test, all made by the test.
type pki struct {
	ca       *certtest.CA
	server   certtest.Pair // 127.0.0.1, server and client auth
	client   certtest.Pair // CA-signed client
	revoked  certtest.Pair // CA-signed, listed in crl
	self     certtest.Pair // self-signed
	crl      string
	certFile string // the server's files, replaced to rotate
	keyFile  string
}

func newPKI(t *testing.T) *pki {
	p := &pki{ca: certtest.NewCA(t, "ca")}
	p.server = p.ca.Issue("server", "server", "127.0.0.1", "localhost")
	p.client = p.ca.Issue("client", "root")
	p.revoked = p.ca.Issue("revoked", "revoked")
	p.crl = p.ca.Revoke(p.revoked)
	p.self = certtest.SelfSigned(t, "self", "root", "127.0.0.1")
	dir := t.TempDir()
	p.certFile, p.keyFile = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	p.server.CopyTo(t, p.certFile, p.keyFile)
	return p
}

// clientInfo is the client and metrics TLS of a member with client
// certificate authentication and a CRL.
func (p *pki) clientInfo() tlsutil.Info {
	return tlsutil.Info{CertFile: p.certFile, KeyFile: p.keyFile, TrustedCAFile: p.ca.CertFile, ClientCertAuth: true, CRLFile: p.crl}
}

// tlsClient returns a clientv3 client of endpoint presenting cert (none
// when cert is the zero Pair), trusting the test's CA.
func (p *pki) tlsClient(t *testing.T, endpoint string, cert certtest.Pair) *clientv3.Client {
	t.Helper()
	info := transport.TLSInfo{TrustedCAFile: p.ca.CertFile, CertFile: cert.CertFile, KeyFile: cert.KeyFile}
	tc, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tc, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestClientTLS serves clients over https with client certificate
// authentication: a CA-signed certificate works, for gRPC and HTTP on the
// one port; no certificate, a self-signed one, a revoked one and plain
// http are refused; the metrics URL stays plain http.
func TestClientTLS(t *testing.T) {
	p := newPKI(t)
	metrics := "http://" + freePorts(t, 1)[0]
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		cfg.ListenClientURLs = []string{"https://127.0.0.1:0"}
		cfg.ListenMetricsURLs = []string{metrics}
		cfg.ClientTLSInfo = p.clientInfo()
	})
	url := c.members[0].ClientURLs()[0]
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("client URL %s", url)
	}
	ep := c.endpoint(0)
	cli := p.tlsClient(t, ep, p.client)
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if g, err := cli.Get(ctx, "k"); err != nil || len(g.Kvs) != 1 {
		t.Fatalf("get: %v %v", g, err)
	}

	for _, tc := range []struct {
		name string
		cert certtest.Pair
	}{{"no certificate", certtest.Pair{}}, {"self-signed", p.self}, {"revoked", p.revoked}} {
		t.Run(tc.name, func(t *testing.T) {
			cli := p.tlsClient(t, ep, tc.cert)
			ctx, cancel := context1s()
			defer cancel()
			if _, err := cli.Get(ctx, "k"); err == nil {
				t.Fatal("get succeeded")
			}
		})
	}
	t.Run("plain gRPC", func(t *testing.T) {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + ep}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context1s()
		defer cancel()
		if _, err := cli.Get(ctx, "k"); err == nil {
			t.Fatal("get over plain gRPC succeeded")
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		hc := &http.Client{Timeout: 2 * time.Second}
		if resp, err := hc.Get("http://" + ep + "/health"); err == nil {
			resp.Body.Close()
			t.Fatalf("GET /health over http: %s", resp.Status)
		}
	})

	// The HTTP endpoints on the TLS port, over HTTP/1.1 and HTTP/2.
	for _, h2 := range []bool{false, true} {
		cert, err := tls.LoadX509KeyPair(p.client.CertFile, p.client.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, p.ca.CertFile), Certificates: []tls.Certificate{cert}}, ForceAttemptHTTP2: h2}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + ep + "/health")
		if err != nil {
			t.Fatalf("GET /health (h2 %v): %v", h2, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"health":"true"`) || (resp.ProtoMajor == 2) != h2 {
			t.Fatalf("GET /health (h2 %v): %s %s %s", h2, resp.Proto, resp.Status, b)
		}
	}
	resp, err := http.Get(metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics over http: %s", resp.Status)
	}
}

// TestClientTLSRotation replaces the server's certificate files: new
// connections get the new certificate, without a restart.
func TestClientTLSRotation(t *testing.T) {
	p := newPKI(t)
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		cfg.ListenClientURLs = []string{"https://127.0.0.1:0"}
		cfg.ClientTLSInfo = p.clientInfo()
	})
	ep := c.endpoint(0)
	served := func() *x509.Certificate {
		t.Helper()
		cert, err := tls.LoadX509KeyPair(p.client.CertFile, p.client.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.Dial("tcp", ep, &tls.Config{RootCAs: caPool(t, p.ca.CertFile), Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	if got := served(); got.SerialNumber.Cmp(p.server.Cert.SerialNumber) != 0 {
		t.Fatalf("served %v, want the first certificate", got.SerialNumber)
	}
	next := p.ca.Issue("server2", "server2", "127.0.0.1")
	next.CopyTo(t, p.certFile, p.keyFile)
	if got := served(); got.SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("served %v after rotation, want %v", got.SerialNumber, next.Cert.SerialNumber)
	}
	cli := p.tlsClient(t, ep, p.client)
	if _, err := cli.Put(ctxT(t), "k", "v"); err != nil {
		t.Fatal(err)
	}
}

// TestEtcdctlTLS drives an https member with the real etcdctl.
func TestEtcdctlTLS(t *testing.T) {
	bin := etcdctlPath(t)
	p := newPKI(t)
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		cfg.ListenClientURLs = []string{"https://127.0.0.1:0"}
		cfg.ClientTLSInfo = p.clientInfo()
	})
	ep := c.members[0].ClientURLs()[0]
	ctl := etcdctl{t: t, bin: bin, endpoints: func() []string { return []string{ep} }}
	tlsArgs := func(cert certtest.Pair, args ...string) []string {
		a := []string{"--cacert=" + p.ca.CertFile}
		if cert.CertFile != "" {
			a = append(a, "--cert="+cert.CertFile, "--key="+cert.KeyFile)
		}
		return append(a, args...)
	}
	ctl.must("", tlsArgs(p.client, "put", "foo", "bar")...)
	if out := ctl.must("", tlsArgs(p.client, "get", "foo", "--print-value-only")...); out != "bar\n" {
		t.Fatalf("get: %q", out)
	}
	if out := ctl.must("", tlsArgs(p.client, "endpoint", "health")...); !strings.Contains(out, "is healthy") {
		t.Fatalf("endpoint health: %q", out)
	}
	for name, args := range map[string][]string{
		"no certificate": tlsArgs(certtest.Pair{}, "get", "foo"),
		"self-signed":    tlsArgs(p.self, "get", "foo"),
		"revoked":        tlsArgs(p.revoked, "get", "foo"),
	} {
		if out, err := ctl.run("", append([]string{"--dial-timeout=1s", "--command-timeout=2s"}, args...)...); err == nil {
			t.Errorf("%s: etcdctl get succeeded: %s", name, out)
		}
	}
	plain := etcdctl{t: t, bin: bin, endpoints: func() []string { return []string{strings.Replace(ep, "https://", "http://", 1)} }}
	if out, err := plain.run("", "--dial-timeout=1s", "--command-timeout=2s", "get", "foo"); err == nil {
		t.Errorf("etcdctl over http succeeded: %s", out)
	}
}

// TestPeerTLS forms a 3-member cluster whose peers talk mTLS, with
// certificates restricted to the members' common names: it serves and
// fails over, and a member with a certificate of another CA cannot join.
func TestPeerTLS(t *testing.T) {
	ca := certtest.NewCA(t, "peer-ca")
	certs := map[string]certtest.Pair{}
	c := newCluster(t, 3, engines()[0], func(cfg *server.Config) {
		toHTTPS(cfg)
		pair := ca.Issue(cfg.Name, "member-"+cfg.Name, "127.0.0.1")
		certs[cfg.Name] = pair
		cfg.PeerTLSInfo = tlsutil.Info{CertFile: pair.CertFile, KeyFile: pair.KeyFile, TrustedCAFile: ca.CertFile,
			ClientCertAuth: true, AllowedCNs: []string{"member-m0", "member-m1", "member-m2", "member-m3"}}
	})
	cli := c.client()
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	// Move the leadership, then stop the leader: the others go on.
	lead := c.leader()
	to := (lead + 1) % 3
	if _, err := c.client(lead).MoveLeader(ctx, c.members[to].MemberID()); err != nil {
		t.Fatal(err)
	}
	if got := c.leader(); got != to {
		t.Fatalf("leader %d after MoveLeader to %d", got, to)
	}
	stopped := c.members[to].MemberID()
	if err := c.members[to].Close(); err != nil {
		t.Fatal(err)
	}
	c.members[to] = nil
	var rest []int
	for i := range 3 {
		if i != to {
			rest = append(rest, i)
		}
	}
	cli2 := c.client(rest...)
	waitFor(t, "a put after the leader stopped", func() bool {
		_, err := cli2.Put(ctx, "k", "2")
		return err == nil
	})

	// A member whose certificate another CA signed: added, it cannot join.
	// (The stopped member is removed first: as etcd's, member add is
	// refused while a voter is down and the grown quorum would need it.)
	if _, err := cli2.MemberRemove(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	peer := "https://" + freePorts(t, 1)[0]
	if _, err := cli2.MemberAddAsLearner(ctx, []string{peer}); err != nil {
		t.Fatal(err)
	}
	rogue := certtest.NewCA(t, "rogue").Issue("m3", "member-m3", "127.0.0.1")
	cfg := c.cfgs[rest[0]]
	cfg.Name, cfg.DataDir = "m3", filepath.Join(t.TempDir(), "m3")
	cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []string{peer}, []string{peer}
	cfg.InitialCluster += ",m3=" + peer
	cfg.InitialClusterState = server.ClusterStateExisting
	cfg.PeerTLSInfo.CertFile, cfg.PeerTLSInfo.KeyFile = rogue.CertFile, rogue.KeyFile
	m3, err := server.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m3.Close()
	select {
	case <-m3.ReadyNotify():
		t.Fatal("the member with a foreign certificate joined")
	case <-time.After(3 * time.Second):
	}
	if _, err := cli2.Put(ctx, "k", "3"); err != nil {
		t.Fatal(err)
	}
}

// toHTTPS makes a member's peer URLs https.
func toHTTPS(cfg *server.Config) {
	fix := func(ss []string) []string {
		var out []string
		for _, s := range ss {
			out = append(out, strings.Replace(s, "http://", "https://", 1))
		}
		return out
	}
	cfg.ListenPeerURLs = fix(cfg.ListenPeerURLs)
	cfg.InitialAdvertisePeerURLs = fix(cfg.InitialAdvertisePeerURLs)
	cfg.InitialCluster = strings.ReplaceAll(cfg.InitialCluster, "http://", "https://")
}

// TestTLSConfigErrors checks etcd's refusals of TLS settings.
func TestTLSConfigErrors(t *testing.T) {
	p := newPKI(t)
	dir := t.TempDir()
	tests := []struct {
		name  string
		tweak func(*server.Config)
		want  string
	}{
		{"https client without certificate", func(c *server.Config) { c.ListenClientURLs = []string{"https://127.0.0.1:0"} },
			"TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:0 with HTTPS scheme"},
		{"https metrics without certificate", func(c *server.Config) { c.ListenMetricsURLs = []string{"https://127.0.0.1:0"} },
			"client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url"},
		{"https peer without certificate", func(c *server.Config) { toHTTPS(c) }, "cannot listen on TLS for"},
		{"bad min version", func(c *server.Config) { c.TLSMinVersion = "TLS1.1" }, `unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)`},
		{"min above max", func(c *server.Config) { c.TLSMinVersion, c.TLSMaxVersion = "TLS1.3", "TLS1.2" }, "min version (TLS1.3) is greater than max version (TLS1.2)"},
		{"ciphers with TLS 1.3 only", func(c *server.Config) {
			c.TLSMinVersion, c.CipherSuites = "TLS1.3", []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}
		}, "cipher suites cannot be configured when only TLS1.3 is enabled"},
		{"unknown cipher", func(c *server.Config) { c.CipherSuites = []string{"nope"} }, `unexpected TLS cipher suite "nope"`},
		{"missing cert file", func(c *server.Config) {
			c.ClientTLSInfo = tlsutil.Info{CertFile: filepath.Join(dir, "none.pem"), KeyFile: p.keyFile}
		}, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := server.Config{Engine: engines()[0], DataDir: filepath.Join(dir, tc.name), ListenClientURLs: []string{"http://127.0.0.1:0"}, ListenPeerURLs: []string{"http://127.0.0.1:0"}}
			tc.tweak(&cfg)
			cfg.EnsureDefaults()
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(cfg.DataDir); err == nil {
				t.Fatal("Validate made the data directory")
			}
		})
	}
}

// TestAutoTLS serves https with a certificate the member makes in its
// data directory (etcd's --auto-tls).
func TestAutoTLS(t *testing.T) {
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
		cfg.ListenClientURLs = []string{"https://127.0.0.1:0"}
		cfg.ClientAutoTLS = true
		toHTTPS(cfg)
		cfg.PeerAutoTLS = true
	})
	for _, side := range []string{"client", "peer"} {
		if _, err := os.Stat(filepath.Join(c.cfgs[0].DataDir, "fixtures", side, "cert.pem")); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.endpoint(0)}, TLS: &tls.Config{InsecureSkipVerify: true},
		DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctxT(t), "k", "v"); err != nil {
		t.Fatal(err)
	}
}

func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal(fmt.Errorf("no certificate in %s", file))
	}
	return p
}

func context1s() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Second)
}

// TestListenClientHTTPURLs: with --listen-client-http-urls, the client
// URLs serve gRPC only and the HTTP URLs the HTTP endpoints only, over
// plain http or TLS.
func TestListenClientHTTPURLs(t *testing.T) {
	p := newPKI(t)
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			httpURL := scheme + "://" + freePorts(t, 1)[0]
			c := newCluster(t, 1, engines()[0], func(cfg *server.Config) {
				cfg.ListenClientURLs = []string{scheme + "://127.0.0.1:0"}
				cfg.ListenClientHTTPURLs = []string{httpURL}
				cfg.ClientTLSInfo = p.clientInfo()
			})
			ep := c.endpoint(0)
			var cli *clientv3.Client
			if scheme == "https" {
				cli = p.tlsClient(t, ep, p.client)
			} else {
				cli = c.client()
			}
			if _, err := cli.Put(ctxT(t), "k", "v"); err != nil {
				t.Fatal(err)
			}
			cert, err := tls.LoadX509KeyPair(p.client.CertFile, p.client.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, p.ca.CertFile), Certificates: []tls.Certificate{cert}}}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
			status := func(url string) int {
				resp, err := hc.Get(url)
				if err != nil {
					return 0
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if got := status(httpURL + "/health"); got != http.StatusOK {
				t.Fatalf("GET /health on the HTTP URL: %d", got)
			}
			if got := status(scheme + "://" + ep + "/health"); got == http.StatusOK {
				t.Fatal("GET /health on the gRPC URL answered 200")
			}
			// gRPC on the HTTP URL fails.
			host := strings.TrimPrefix(strings.TrimPrefix(httpURL, "https://"), "http://")
			var other *clientv3.Client
			if scheme == "https" {
				other = p.tlsClient(t, host, p.client)
			} else {
				other, err = clientv3.New(clientv3.Config{Endpoints: []string{host}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
				if err != nil {
					t.Fatal(err)
				}
				defer other.Close()
			}
			ctx, cancel := context1s()
			defer cancel()
			if _, err := other.Get(ctx, "k"); err == nil {
				t.Fatal("gRPC on the HTTP URL succeeded")
			}
		})
	}
}
