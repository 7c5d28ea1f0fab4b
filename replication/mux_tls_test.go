package replication

import (
	"net"
	"testing"
	"time"

	"github.com/strata-kv/strata/internal/certtest"
	"github.com/strata-kv/strata/internal/sockopt"
	"github.com/strata-kv/strata/internal/tlsutil"
)

// TestPeerMuxTLS: the peer port takes TLS connections from peers whose
// certificate the CA signed and, with the SAN check on, names the address
// they connect from; others are closed before raft or the peer service
// sees them.
func TestPeerMuxTLS(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	server := ca.Issue("server", "m0", "127.0.0.1")
	good := ca.Issue("good", "m1", "127.0.0.1")
	elsewhere := ca.Issue("elsewhere", "m2", "127.0.0.2")
	foreign := certtest.NewCA(t, "other").Issue("foreign", "m3", "127.0.0.1")
	info := func(p certtest.Pair) tlsutil.Info {
		return tlsutil.Info{CertFile: p.CertFile, KeyFile: p.KeyFile, TrustedCAFile: ca.CertFile, ClientCertAuth: true}
	}
	for _, tc := range []struct {
		name     string
		client   certtest.Pair
		checkSAN bool
		ok       bool
	}{
		{"CA-signed", good, true, true},
		{"another CA", foreign, false, false},
		{"SAN elsewhere", elsewhere, true, false},
		{"SAN elsewhere, check off", elsewhere, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := info(server).ServerConfig()
			if err != nil {
				t.Fatal(err)
			}
			m, err := listenPeers("127.0.0.1:0", "", nil, sc, sc, sockopt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			m.checkSAN = tc.checkSAN
			m.wg.Add(1)
			go m.acceptLoop()
			defer m.close()
			cc, err := info(tc.client).ClientConfig()
			if err != nil {
				t.Fatal(err)
			}
			d := &peerMux{dial: tcpDial, clientTLS: cc}
			c, err := d.dialProto(m.ln.Addr().String(), muxRaft, 2*time.Second)
			if err == nil {
				defer c.Close()
			}
			var got net.Conn
			select {
			case got = <-m.raftc:
				got.Close()
			case <-time.After(time.Second):
			}
			if (got != nil) != tc.ok {
				t.Fatalf("routed %v, want %v (dial: %v)", got != nil, tc.ok, err)
			}
		})
	}
}
