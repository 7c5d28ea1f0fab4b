// Package certtest makes real certificates for tests: a CA, certificates
// it signs (server, client or both), self-signed ones and a CRL, written as
// PEM files in a test's temporary directory.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority of a test.
type CA struct {
	t       testing.TB
	dir     string
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	serial  atomic.Int64
	revoked []x509.RevocationListEntry
	// CertFile is the CA certificate's PEM file (a --trusted-ca-file).
	CertFile string
}

// Pair is a certificate and its key on disk.
type Pair struct {
	CertFile, KeyFile string
	Cert              *x509.Certificate
}

// NewCA makes a CA named name whose files go in a temporary directory.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	dir := t.TempDir()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{t: t, dir: dir, cert: cert, key: key, CertFile: filepath.Join(dir, name+"-ca.pem")}
	ca.serial.Store(1)
	writePEM(t, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Issue makes a certificate for cn valid for hosts (IPs or DNS names),
// usable by servers and clients, in files named after name.
func (ca *CA) Issue(name, cn string, hosts ...string) Pair {
	ca.t.Helper()
	return ca.issue(name, cn, hosts, ca.cert, ca.key)
}

// SelfSigned makes a self-signed certificate, as Issue's but signed by
// no CA.
func SelfSigned(t testing.TB, name, cn string, hosts ...string) Pair {
	t.Helper()
	ca := &CA{t: t, dir: t.TempDir()}
	return ca.issue(name, cn, hosts, nil, nil)
}

func (ca *CA) issue(name, cn string, hosts []string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) Pair {
	t := ca.t
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(ca.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := Pair{CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+"-key.pem"), Cert: cert}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.KeyFile, "EC PRIVATE KEY", kb)
	writePEM(t, p.CertFile, "CERTIFICATE", der)
	return p
}

// Revoke adds p to the CA's revocation list and writes the list to the
// returned file (a --client-crl-file); each call rewrites the same file.
func (ca *CA) Revoke(p Pair) string {
	ca.t.Helper()
	ca.revoked = append(ca.revoked, x509.RevocationListEntry{SerialNumber: p.Cert.SerialNumber, RevocationTime: time.Now()})
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(int64(len(ca.revoked))),
		ThisUpdate:                time.Now().Add(-time.Minute),
		NextUpdate:                time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: ca.revoked,
	}, ca.cert, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	f := filepath.Join(ca.dir, "crl.pem")
	writePEM(ca.t, f, "X509 CRL", der)
	return f
}

// CopyTo writes p's files to certFile and keyFile (replacing them, as an
// operator rotating certificates does).
func (p Pair) CopyTo(t testing.TB, certFile, keyFile string) {
	t.Helper()
	for _, c := range [][2]string{{p.KeyFile, keyFile}, {p.CertFile, certFile}} {
		b, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		tmp := c[1] + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, c[1]); err != nil {
			t.Fatal(err)
		}
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
