package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLS versions as etcd's --tls-min-version and --tls-max-version name
// them.
const (
	VersionTLS12 = "TLS1.2"
	VersionTLS13 = "TLS1.3"
)

// ParseVersion parses etcd's names of TLS versions; "" is 0 (the
// default).
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "":
		return 0, nil
	case VersionTLS12:
		return tls.VersionTLS12, nil
	case VersionTLS13:
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unexpected TLS version %q (must be one of: TLS1.2, TLS1.3)", s)
}

// ParseCipherSuites parses cipher suite names (Go's, which are IANA's, and
// the two short ChaCha20 names etcd also accepts).
func ParseCipherSuites(names []string) ([]uint16, error) {
	var ids []uint16
	for _, n := range names {
		id, ok := cipherSuite(n)
		if !ok {
			return nil, fmt.Errorf("unexpected TLS cipher suite %q", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func cipherSuite(name string) (uint16, bool) {
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, c := range list {
			if c.Name == name {
				return c.ID, true
			}
		}
	}
	switch name {
	case "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305":
		return tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true
	case "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305":
		return tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true
	}
	return 0, false
}

// SelfCert returns an Info with a self-signed certificate for hosts
// (host:port or host), valid for validityYears, kept in dir as cert.pem
// and key.pem, as etcd's --auto-tls and --peer-auto-tls do: files already
// there are used again. Outgoing connections skip verification
// (InsecureSkipVerify), as etcd's do with auto TLS. usages are extended
// key usages beyond server auth (peers add client auth).
func SelfCert(dir string, hosts []string, validityYears uint, usages ...x509.ExtKeyUsage) (Info, error) {
	if validityYears == 0 {
		return Info{}, errors.New("selfSignedCertValidity is invalid,it should be greater than 0")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, fmt.Errorf("tlsutil: cert directory: %w", err)
	}
	certPath, err := filepath.Abs(filepath.Join(dir, "cert.pem"))
	if err != nil {
		return Info{}, err
	}
	keyPath := filepath.Join(filepath.Dir(certPath), "key.pem")
	info := Info{CertFile: certPath, KeyFile: keyPath, InsecureSkipVerify: true}
	_, errc := os.Stat(certPath)
	_, errk := os.Stat(keyPath)
	if errc == nil && errk == nil {
		return info, nil
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return Info{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"etcd"}},
		NotBefore:             now,
		NotAfter:              now.Add(time.Duration(validityYears) * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		ExtKeyUsage:           append([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, usages...),
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Info{}, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Info{}, fmt.Errorf("tlsutil: self-signed certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Info{}, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return Info{}, fmt.Errorf("tlsutil: key file: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return Info{}, fmt.Errorf("tlsutil: cert file: %w", err)
	}
	return info, nil
}

// pemBlock returns the bytes of the first PEM block of type typ in b, nil
// if b is not PEM.
func pemBlock(b []byte, typ string) []byte {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil
		}
		if blk.Type == typ {
			return blk.Bytes
		}
	}
}
