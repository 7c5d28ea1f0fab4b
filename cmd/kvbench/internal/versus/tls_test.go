package versus

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestTLSFiles: the certificate made for a TLS comparison serves and
// authenticates a client on 127.0.0.1; without TLS there are no flags.
func TestTLSFiles(t *testing.T) {
	var none *tlsFiles
	if none.serverArgs() != nil || none.clientArgs() != nil {
		t.Fatal("flags without TLS")
	}
	f, err := makeTLSFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(f.serverArgs(), "--peer-client-cert-auth") || !slices.Contains(f.clientArgs(), "--cacert="+f.cert) {
		t.Fatalf("flags: %v %v", f.serverArgs(), f.clientArgs())
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	defer srv.Close()
	hc, err := f.httpClient()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hc.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %s", resp.Status)
	}
}
