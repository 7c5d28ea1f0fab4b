package versus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/strata-kv/strata/internal/tlsutil"
)

// tlsFiles is the certificate of a TLS comparison: one self-signed
// certificate for 127.0.0.1, valid for servers and clients, that is also
// the CA every side trusts. Both servers get the same files and flags.
type tlsFiles struct{ cert, key string }

func makeTLSFiles(dir string) (*tlsFiles, error) {
	info, err := tlsutil.SelfCert(dir, []string{"127.0.0.1", "localhost"}, 1, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, fmt.Errorf("versus: TLS certificate: %w", err)
	}
	return &tlsFiles{cert: info.CertFile, key: info.KeyFile}, nil
}

// serverArgs are etcd's flags for client and peer mTLS; none without
// TLS.
func (f *tlsFiles) serverArgs() []string {
	if f == nil {
		return nil
	}
	return []string{"--cert-file=" + f.cert, "--key-file=" + f.key, "--trusted-ca-file=" + f.cert, "--client-cert-auth",
		"--peer-cert-file=" + f.cert, "--peer-key-file=" + f.key, "--peer-trusted-ca-file=" + f.cert, "--peer-client-cert-auth"}
}

// clientArgs are the benchmark tool's and etcdctl's flags for the client
// certificate; none without TLS.
func (f *tlsFiles) clientArgs() []string {
	if f == nil {
		return nil
	}
	return []string{"--cacert=" + f.cert, "--cert=" + f.cert, "--key=" + f.key}
}

// httpClient asks /health, over TLS with the client certificate when f
// is set.
func (f *tlsFiles) httpClient() (*http.Client, error) {
	hc := &http.Client{Timeout: time.Second}
	if f == nil {
		return hc, nil
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, err
	}
	pem, err := os.ReadFile(f.cert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}
	return hc, nil
}
