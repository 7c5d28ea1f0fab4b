package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"

	"github.com/strata-kv/strata/internal/tlsutil"
)

// tlsPair is one side's TLS: the listener's configuration and that of the
// connections it opens.
type tlsPair struct{ server, client *tls.Config }

// tlsConfigs makes the client and peer TLS configurations, first making
// the auto-TLS certificates in the data directory as etcd does. A side
// without TLS has zero configurations.
func (c *config) tlsConfigs() (client, peer tlsPair, err error) {
	if c.ClientAutoTLS {
		if !c.ClientTLSInfo.Empty() {
			c.Logger.Warn("ignoring client auto TLS since certs given")
		} else {
			var hosts []string
			for _, u := range c.listenClient {
				hosts = append(hosts, u.Host)
			}
			if c.ClientTLSInfo, err = tlsutil.SelfCert(filepath.Join(c.DataDir, "fixtures", "client"), hosts, c.SelfSignedCertValidity); err != nil {
				return client, peer, fmt.Errorf("server: --auto-tls: %w", err)
			}
			c.Logger.Warn("automatically generate certificates", "cert_file", c.ClientTLSInfo.CertFile)
		}
	}
	if c.PeerAutoTLS {
		if !c.PeerTLSInfo.Empty() {
			c.Logger.Warn("ignoring peer auto TLS since certs given")
		} else {
			if c.PeerTLSInfo, err = tlsutil.SelfCert(filepath.Join(c.DataDir, "fixtures", "peer"), []string{c.listenPeer.Host},
				c.SelfSignedCertValidity, x509.ExtKeyUsageClientAuth); err != nil {
				return client, peer, fmt.Errorf("server: --peer-auto-tls: %w", err)
			}
			c.Logger.Warn("automatically generate certificates", "cert_file", c.PeerTLSInfo.CertFile)
		}
	}
	if !c.ClientTLSInfo.Empty() {
		// "h2" for gRPC, "http/1.1" for curl and Prometheus.
		if client.server, err = c.tlsInfo(c.ClientTLSInfo).ServerConfig("h2", "http/1.1"); err != nil {
			return client, peer, fmt.Errorf("server: client TLS: %w", err)
		}
	}
	if !c.PeerTLSInfo.Empty() {
		info := c.tlsInfo(c.PeerTLSInfo)
		if peer.server, err = info.ServerConfig(); err != nil {
			return client, peer, fmt.Errorf("server: peer TLS: %w", err)
		}
		if peer.client, err = info.ClientConfig(); err != nil {
			return client, peer, fmt.Errorf("server: peer TLS: %w", err)
		}
	}
	if c.listenPeer.Scheme == "http" && (!c.PeerTLSInfo.Empty() || c.PeerTLSInfo.ClientCertAuth) {
		c.Logger.Warn("scheme is HTTP while key and cert files are present; ignoring key and cert files", "peer_url", c.listenPeer.String())
	}
	return client, peer, nil
}

// grpcHandler serves gRPC requests (HTTP/2 with a gRPC content type)
// with the gRPC server and the others with next: how etcd serves gRPC and
// HTTP on one TLS port. The gRPC server sees the client's verified
// certificate as a credentials.TLSInfo in the peer of each request.
func grpcHandler(g *grpc.Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
