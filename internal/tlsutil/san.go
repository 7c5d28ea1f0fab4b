package tlsutil

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
)

// CheckClientSAN checks that a client certificate names the address it
// connects from, as etcd's peer listener does: a certificate without IP or
// DNS SANs passes; otherwise the remote IP must be one of its IP SANs or
// an address one of its DNS names resolves to.
func CheckClientSAN(ctx context.Context, cert *x509.Certificate, remoteAddr string) error {
	if len(cert.IPAddresses) == 0 && len(cert.DNSNames) == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip != nil && slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
		return nil
	}
	for _, name := range cert.DNSNames {
		if strings.Contains(name, "*") {
			continue // a wildcard cannot be looked up
		}
		addrs, err := net.DefaultResolver.LookupHost(ctx, name)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if a == host || (ip != nil && ip.Equal(net.ParseIP(a))) {
				return nil
			}
		}
	}
	return fmt.Errorf("tlsutil: client certificate is valid for %v %v, not for the address it connects from, %s", cert.IPAddresses, cert.DNSNames, host)
}
