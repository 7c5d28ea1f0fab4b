// Package tlsutil builds the TLS configurations of a member's client and
// peer ports from certificate files, as etcd's transport.TLSInfo does:
// TLS 1.2 at least by default, client certificates required once a
// trusted CA is given, a CRL checked on the server side, peer certificates
// restricted to allowed common names or hostnames, and certificates read
// again from disk when their files change, so that they rotate without a
// restart.
package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// ErrInvalidInfo is wrapped by the errors of Info.Validate.
var ErrInvalidInfo = errors.New("tlsutil: invalid TLS configuration")

// Info names the files and rules of one side's TLS (client or peer),
// etcd's transport.TLSInfo.
type Info struct {
	// CertFile and KeyFile are the certificate presented and its key
	// (--cert-file/--key-file, --peer-cert-file/--peer-key-file). Also the
	// client certificate of outgoing connections unless ClientCertFile is
	// set.
	CertFile, KeyFile string
	// ClientCertFile and ClientKeyFile, if set, are the certificate of
	// outgoing connections.
	ClientCertFile, ClientKeyFile string
	// TrustedCAFile verifies the other side's certificate
	// (--trusted-ca-file, --peer-trusted-ca-file). On a server, setting it
	// requires client certificates, as in etcd.
	TrustedCAFile string
	// ClientCertAuth requires and verifies client certificates
	// (--client-cert-auth, --peer-client-cert-auth).
	ClientCertAuth bool
	// CRLFile is a certificate revocation list: a server refuses client
	// certificates it lists (--client-crl-file, --peer-crl-file). It is
	// read at each handshake.
	CRLFile string
	// AllowedCNs and AllowedHostnames restrict the certificates accepted
	// from the other side to those with one of these common names, or valid
	// for one of these hostnames or IPs (--peer-cert-allowed-cn,
	// --peer-cert-allowed-hostname). At most one of them may be set.
	AllowedCNs, AllowedHostnames []string
	// CipherSuites are the TLS 1.2 cipher suites allowed; empty lets Go
	// choose (--cipher-suites).
	CipherSuites []uint16
	// MinVersion is the lowest TLS version accepted; zero means TLS 1.2
	// (--tls-min-version). MaxVersion zero lets Go choose
	// (--tls-max-version).
	MinVersion, MaxVersion uint16
	// SkipClientSANVerify turns off CheckClientSAN on peer listeners
	// (--peer-skip-client-san-verification).
	SkipClientSANVerify bool
	// InsecureSkipVerify makes outgoing connections accept any server
	// certificate; SelfCert sets it, as etcd's auto TLS does.
	InsecureSkipVerify bool
}

// Empty reports whether no certificate is configured.
func (i Info) Empty() bool { return i.CertFile == "" && i.KeyFile == "" }

// String is a one-line summary for logs.
func (i Info) String() string {
	return fmt.Sprintf("cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %v, crl-file = %s",
		i.CertFile, i.KeyFile, i.TrustedCAFile, i.ClientCertAuth, i.CRLFile)
}

// Validate checks that the files can be loaded and the rules agree; its
// errors wrap ErrInvalidInfo.
func (i Info) Validate() error {
	if i.CertFile == "" || i.KeyFile == "" {
		return fmt.Errorf("%w: KeyFile and CertFile must both be present[key: %v, cert: %v]", ErrInvalidInfo, i.KeyFile, i.CertFile)
	}
	if (i.ClientCertFile == "") != (i.ClientKeyFile == "") {
		return fmt.Errorf("%w: ClientKeyFile and ClientCertFile must both be present or both absent: key: %v, cert: %v", ErrInvalidInfo, i.ClientKeyFile, i.ClientCertFile)
	}
	if len(i.AllowedCNs) > 0 && len(i.AllowedHostnames) > 0 {
		return fmt.Errorf("%w: AllowedCNs and AllowedHostnames are mutually exclusive (cns=%q, hostnames=%q)", ErrInvalidInfo, i.AllowedCNs, i.AllowedHostnames)
	}
	if i.MaxVersion != 0 && i.MinVersion > i.MaxVersion {
		return fmt.Errorf("%w: min version (%s) is greater than max version (%s)", ErrInvalidInfo, tls.VersionName(i.MinVersion), tls.VersionName(i.MaxVersion))
	}
	if _, err := tls.LoadX509KeyPair(i.CertFile, i.KeyFile); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidInfo, err)
	}
	if i.ClientCertFile != "" {
		if _, err := tls.LoadX509KeyPair(i.ClientCertFile, i.ClientKeyFile); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidInfo, err)
		}
	}
	if i.TrustedCAFile != "" {
		if _, err := loadPool(i.TrustedCAFile); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidInfo, err)
		}
	}
	return nil
}

// base is the configuration both sides share: versions, ciphers, the
// allowed names, and the certificates read through a cache that reloads
// changed files.
func (i Info) base() (*tls.Config, error) {
	if err := i.Validate(); err != nil {
		return nil, err
	}
	minV := i.MinVersion
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	cfg := &tls.Config{MinVersion: minV, MaxVersion: i.MaxVersion, CipherSuites: slices.Clone(i.CipherSuites)}
	if check := i.nameCheck(); check != nil {
		cfg.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
			for _, chain := range chains {
				if len(chain) > 0 && check(chain[0]) {
					return nil
				}
			}
			return errors.New("client certificate authentication failed")
		}
	}
	// Certificates stay out of cfg.Certificates so that every handshake
	// asks the cache, which notices a rotated file.
	server := &certCache{certFile: i.CertFile, keyFile: i.KeyFile}
	client := server
	if i.ClientCertFile != "" {
		client = &certCache{certFile: i.ClientCertFile, keyFile: i.ClientKeyFile}
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return server.get() }
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return client.get() }
	return cfg, nil
}

func (i Info) nameCheck() func(*x509.Certificate) bool {
	switch {
	case len(i.AllowedCNs) > 0:
		return func(c *x509.Certificate) bool { return slices.Contains(i.AllowedCNs, c.Subject.CommonName) }
	case len(i.AllowedHostnames) > 0:
		return func(c *x509.Certificate) bool {
			return slices.ContainsFunc(i.AllowedHostnames, func(h string) bool { return c.VerifyHostname(h) == nil })
		}
	}
	return nil
}

// ServerConfig returns the configuration of a listener. nextProtos are
// the ALPN protocols offered ("h2" for gRPC).
func (i Info) ServerConfig(nextProtos ...string) (*tls.Config, error) {
	cfg, err := i.base()
	if err != nil {
		return nil, err
	}
	cfg.ClientAuth = tls.NoClientCert
	if i.TrustedCAFile != "" || i.ClientCertAuth {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if i.TrustedCAFile != "" {
		if cfg.ClientCAs, err = loadPool(i.TrustedCAFile); err != nil {
			return nil, err
		}
	}
	if i.CRLFile != "" {
		crl := i.CRLFile
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return checkCRL(crl, cs.PeerCertificates) }
	}
	cfg.NextProtos = slices.Clone(nextProtos)
	return cfg, nil
}

// ClientConfig returns the configuration of outgoing connections. The
// caller sets ServerName to the host dialed.
func (i Info) ClientConfig(nextProtos ...string) (*tls.Config, error) {
	cfg, err := i.base()
	if err != nil {
		return nil, err
	}
	if i.TrustedCAFile != "" {
		if cfg.RootCAs, err = loadPool(i.TrustedCAFile); err != nil {
			return nil, err
		}
	}
	cfg.InsecureSkipVerify = i.InsecureSkipVerify
	if cfg.InsecureSkipVerify && cfg.VerifyPeerCertificate != nil {
		// Without verification there are no chains: check the leaf.
		check := i.nameCheck()
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				if c, err := x509.ParseCertificate(raw[0]); err == nil && check(c) {
					return nil
				}
			}
			return errors.New("client certificate authentication failed")
		}
	}
	cfg.NextProtos = slices.Clone(nextProtos)
	return cfg, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: trusted CA file: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tlsutil: trusted CA file %s: no PEM certificate in it", file)
	}
	return p, nil
}

// checkCRL refuses certificates whose serial numbers the CRL file lists.
// etcd reads the file at each handshake, and so does this.
func checkCRL(file string, certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("tlsutil: CRL file: %w", err)
	}
	if blk := pemBlock(b, "X509 CRL"); blk != nil {
		b = blk
	}
	list, err := x509.ParseRevocationList(b)
	if err != nil {
		return fmt.Errorf("tlsutil: CRL file %s: %w", file, err)
	}
	for _, e := range list.RevokedCertificateEntries {
		for _, c := range certs {
			if c.SerialNumber.Cmp(e.SerialNumber) == 0 {
				return fmt.Errorf("transport: certificate serial %x revoked", c.SerialNumber.Bytes())
			}
		}
	}
	return nil
}

// certCache holds a key pair and reloads it when either file's size or
// modification time changes.
type certCache struct {
	certFile, keyFile string

	mu       sync.Mutex
	cert     *tls.Certificate
	certStat fileStamp
	keyStat  fileStamp
}

type fileStamp struct {
	size int64
	mod  time.Time
}

func stamp(file string) (fileStamp, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.Size(), fi.ModTime()}, nil
}

func (c *certCache) get() (*tls.Certificate, error) {
	cs, err := stamp(c.certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: cert file: %w", err)
	}
	ks, err := stamp(c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: key file: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && cs == c.certStat && ks == c.keyStat {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		// A rotation half done (one file written, not the other) fails
		// this handshake; the next one retries.
		return nil, fmt.Errorf("tlsutil: %w", err)
	}
	c.cert, c.certStat, c.keyStat = &cert, cs, ks
	return c.cert, nil
}
