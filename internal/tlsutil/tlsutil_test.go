package tlsutil_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-kv/strata/internal/certtest"
	"github.com/strata-kv/strata/internal/tlsutil"
)

// handshake runs a TLS handshake over a pipe and returns the server's and
// the client's errors and the certificate the client saw.
func handshake(t *testing.T, srv, cli *tls.Config) (serr, cerr error, served *x509.Certificate) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		a.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(a, srv)
		err = s.Handshake()
		if err == nil {
			// TLS 1.3 clients learn of a refused certificate at their
			// first read: make one happen.
			_, err = s.Write([]byte{1})
		}
		s.Close()
		done <- err
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(b, cli)
	cerr = c.Handshake()
	if cerr == nil {
		var n int
		n, cerr = c.Read(make([]byte, 1))
		if n == 1 {
			cerr = nil
		}
		if st := c.ConnectionState(); len(st.PeerCertificates) > 0 {
			served = st.PeerCertificates[0]
		}
	}
	c.Close()
	return <-done, cerr, served
}

func TestHandshakes(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	other := certtest.NewCA(t, "other")
	server := ca.Issue("server", "server", "127.0.0.1")
	client := ca.Issue("client", "root")
	revoked := ca.Issue("revoked", "revoked")
	crl := ca.Revoke(revoked)
	self := certtest.SelfSigned(t, "self", "root")
	foreign := other.Issue("foreign", "root")
	peer2 := ca.Issue("peer2", "member-2", "127.0.0.2")

	srvInfo := tlsutil.Info{CertFile: server.CertFile, KeyFile: server.KeyFile, TrustedCAFile: ca.CertFile, ClientCertAuth: true, CRLFile: crl}
	cli := func(p certtest.Pair) tlsutil.Info {
		return tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, TrustedCAFile: ca.CertFile}
	}
	tests := []struct {
		name   string
		srv    tlsutil.Info
		cli    tlsutil.Info
		noCert bool
		max    uint16 // client's max version
		ok     bool
	}{
		{name: "CA-signed client", srv: srvInfo, cli: cli(client), ok: true},
		{name: "no client cert", srv: srvInfo, cli: tlsutil.Info{TrustedCAFile: ca.CertFile}, noCert: true},
		{name: "self-signed client", srv: srvInfo, cli: cli(self)},
		{name: "client of another CA", srv: srvInfo, cli: cli(foreign)},
		{name: "revoked client", srv: srvInfo, cli: cli(revoked)},
		{name: "TLS 1.1 client", srv: srvInfo, cli: cli(client), max: tls.VersionTLS11},
		{name: "TLS 1.2 client", srv: srvInfo, cli: cli(client), max: tls.VersionTLS12, ok: true},
		{name: "no client auth", srv: tlsutil.Info{CertFile: server.CertFile, KeyFile: server.KeyFile}, cli: tlsutil.Info{TrustedCAFile: ca.CertFile}, noCert: true, ok: true},
		{name: "allowed CN", srv: withCN(srvInfo, "member-2"), cli: cli(peer2), ok: true},
		{name: "CN not allowed", srv: withCN(srvInfo, "member-2"), cli: cli(client)},
		{name: "allowed hostname", srv: withHost(srvInfo, "127.0.0.2"), cli: cli(peer2), ok: true},
		{name: "hostname not allowed", srv: withHost(srvInfo, "127.0.0.2"), cli: cli(client)},
		{name: "server not trusted", srv: srvInfo, cli: tlsutil.Info{CertFile: client.CertFile, KeyFile: client.KeyFile, TrustedCAFile: other.CertFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := tc.srv.ServerConfig()
			if err != nil {
				t.Fatal(err)
			}
			var cc *tls.Config
			if tc.noCert {
				cc = &tls.Config{RootCAs: pool(t, ca.CertFile)}
			} else if cc, err = tc.cli.ClientConfig(); err != nil {
				t.Fatal(err)
			}
			cc.ServerName = "127.0.0.1"
			cc.MaxVersion = tc.max
			serr, cerr, _ := handshake(t, sc, cc)
			if ok := serr == nil && cerr == nil; ok != tc.ok {
				t.Fatalf("handshake ok = %v, want %v (server: %v, client: %v)", ok, tc.ok, serr, cerr)
			}
		})
	}
}

func withCN(i tlsutil.Info, cn string) tlsutil.Info  { i.AllowedCNs = []string{cn}; return i }
func withHost(i tlsutil.Info, h string) tlsutil.Info { i.AllowedHostnames = []string{h}; return i }
func pool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(b)
	return p
}

// TestRotation replaces the certificate files under a running
// configuration: the next handshake serves the new certificate.
func TestRotation(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	first := ca.Issue("first", "first", "127.0.0.1")
	second := ca.Issue("second", "second", "127.0.0.1")
	first.CopyTo(t, certFile, keyFile)
	sc, err := tlsutil.Info{CertFile: certFile, KeyFile: keyFile}.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cc := &tls.Config{RootCAs: pool(t, ca.CertFile), ServerName: "127.0.0.1"}
	for i, want := range []certtest.Pair{first, second} {
		if i == 1 {
			second.CopyTo(t, certFile, keyFile)
		}
		serr, cerr, got := handshake(t, sc, cc)
		if serr != nil || cerr != nil {
			t.Fatalf("handshake %d: server %v, client %v", i, serr, cerr)
		}
		if got.SerialNumber.Cmp(want.Cert.SerialNumber) != 0 {
			t.Fatalf("handshake %d served %s, want %s", i, got.Subject.CommonName, want.Cert.Subject.CommonName)
		}
	}
}

func TestValidate(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	p := ca.Issue("p", "p")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		info tlsutil.Info
	}{
		{"no cert", tlsutil.Info{KeyFile: p.KeyFile}},
		{"no key", tlsutil.Info{CertFile: p.CertFile}},
		{"missing files", tlsutil.Info{CertFile: missing, KeyFile: missing}},
		{"key is not the cert's", tlsutil.Info{CertFile: p.CertFile, KeyFile: ca.CertFile}},
		{"half a client pair", tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, ClientCertFile: p.CertFile}},
		{"CN and hostname", tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, AllowedCNs: []string{"a"}, AllowedHostnames: []string{"b"}}},
		{"min above max", tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}},
		{"missing CA", tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, TrustedCAFile: missing}},
		{"CA not PEM", tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, TrustedCAFile: p.KeyFile}},
	}
	for _, tc := range tests {
		if err := tc.info.Validate(); !errors.Is(err, tlsutil.ErrInvalidInfo) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidInfo", tc.name, err)
		}
	}
	if err := (tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, TrustedCAFile: ca.CertFile}).Validate(); err != nil {
		t.Errorf("valid info: %v", err)
	}
}

func TestParse(t *testing.T) {
	for s, want := range map[string]uint16{"": 0, "TLS1.2": tls.VersionTLS12, "TLS1.3": tls.VersionTLS13} {
		if v, err := tlsutil.ParseVersion(s); err != nil || v != want {
			t.Errorf("ParseVersion(%q) = %v, %v", s, v, err)
		}
	}
	if _, err := tlsutil.ParseVersion("TLS1.1"); err == nil || err.Error() != `unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)` {
		t.Errorf("ParseVersion(TLS1.1) = %v", err)
	}
	ids, err := tlsutil.ParseCipherSuites([]string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"})
	if err != nil || len(ids) != 2 || ids[0] != tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 || ids[1] != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("ParseCipherSuites = %v, %v", ids, err)
	}
	if _, err := tlsutil.ParseCipherSuites([]string{"nope"}); err == nil || err.Error() != `unexpected TLS cipher suite "nope"` {
		t.Errorf("ParseCipherSuites(nope) = %v", err)
	}
}

// TestSelfCert makes an auto-TLS certificate, then finds it again.
func TestSelfCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fixtures", "client")
	info, err := tlsutil.SelfCert(dir, []string{"127.0.0.1:2379", "localhost:2379"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tlsutil.SelfCert(dir, nil, 1)
	if err != nil || again.CertFile != info.CertFile || again.KeyFile != info.KeyFile || !again.InsecureSkipVerify {
		t.Fatalf("second SelfCert = %+v, %v; want %+v", again, err, info)
	}
	sc, err := info.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if serr, cerr, got := handshake(t, sc, cc); serr != nil || cerr != nil || got.VerifyHostname("localhost") != nil || got.VerifyHostname("127.0.0.1") != nil {
		t.Fatalf("handshake: %v, %v, %v", serr, cerr, got)
	}
	if _, err := tlsutil.SelfCert(dir, nil, 0); err == nil {
		t.Fatal("SelfCert with validity 0 succeeded")
	}
}

func TestCheckClientSAN(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	tests := []struct {
		name   string
		hosts  []string
		remote string
		ok     bool
	}{
		{"no SANs", nil, "10.0.0.9:1234", true},
		{"IP SAN", []string{"127.0.0.1"}, "127.0.0.1:1234", true},
		{"other IP", []string{"127.0.0.2"}, "127.0.0.1:1234", false},
		{"localhost", []string{"localhost"}, "127.0.0.1:1234", true},
		{"name elsewhere", []string{"localhost"}, "10.0.0.9:1234", false},
	}
	for _, tc := range tests {
		p := ca.Issue(strings.ReplaceAll(tc.name, " ", "-"), "m", tc.hosts...)
		err := tlsutil.CheckClientSAN(context.Background(), p.Cert, tc.remote)
		if (err == nil) != tc.ok {
			t.Errorf("%s: CheckClientSAN = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
