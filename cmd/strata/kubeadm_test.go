package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/internal/certtest"
	"github.com/strata-kv/strata/internal/freeport"
)

// TestKubeadmStaticPod starts strata as a process with the command line
// of kubeadm's stacked etcd static pod (kubeadm v1.3x: the flags of
// kubeadmFlags with https URLs and kubeadm's TLS flags, with real
// certificates laid out as kubeadm's /etc/kubernetes/pki/etcd), and
// checks what the kubelet and kube-apiserver then do: the probes on the
// http metrics URL (/livez, /readyz, kubeadm's
// /health?exclude=NOSPACE&serializable=true) answer 200, and a client with
// the apiserver-etcd-client certificate writes and reads over mTLS, while
// one without a certificate is refused.
func TestKubeadmStaticPod(t *testing.T) {
	addrs, err := freeport.Addrs(3)
	if err != nil {
		t.Fatal(err)
	}
	client, peer, metrics := addrs[0], addrs[1], addrs[2]
	ca := certtest.NewCA(t, "etcd-ca")
	server := ca.Issue("server", "cp1", "127.0.0.1", "localhost")
	peerPair := ca.Issue("peer", "cp1", "127.0.0.1", "localhost")
	apiserver := ca.Issue("apiserver-etcd-client", "kube-apiserver-etcd-client")
	data := filepath.Join(t.TempDir(), "etcd")

	p := startProc(t,
		"--advertise-client-urls=https://"+client,
		"--cert-file="+server.CertFile,
		"--client-cert-auth=true",
		"--data-dir="+data,
		"--feature-gates=InitialCorruptCheck=true",
		"--initial-advertise-peer-urls=https://"+peer,
		"--initial-cluster=cp1=https://"+peer,
		"--key-file="+server.KeyFile,
		"--listen-client-urls=https://"+client,
		"--listen-metrics-urls=http://"+metrics,
		"--listen-peer-urls=https://"+peer,
		"--name=cp1",
		"--peer-cert-file="+peerPair.CertFile,
		"--peer-client-cert-auth=true",
		"--peer-key-file="+peerPair.KeyFile,
		"--peer-trusted-ca-file="+ca.CertFile,
		"--snapshot-count=10000",
		"--trusted-ca-file="+ca.CertFile,
		"--watch-progress-notify-interval=5s",
	)

	// The kubelet's probes, on the plain http metrics URL.
	for _, path := range []string{"/readyz", "/livez", "/health?exclude=NOSPACE&serializable=true"} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := 0, ""
			if resp, err := http.Get("http://" + metrics + path); err == nil {
				b := make([]byte, 512)
				n, _ := resp.Body.Read(b)
				resp.Body.Close()
				code, body = resp.StatusCode, string(b[:n])
			}
			if code == http.StatusOK {
				break
			}
			select {
			case <-p.done:
				t.Fatalf("strata exited: %v\n%s", p.err, p.out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %d %q after 30s\n%s", path, code, body, p.out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	dial := func(cert certtest.Pair) *clientv3.Client {
		info := transport.TLSInfo{TrustedCAFile: ca.CertFile, CertFile: cert.CertFile, KeyFile: cert.KeyFile}
		tc, err := info.ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + client}, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := dial(apiserver)
	if _, err := cli.Put(ctx, "/registry/namespaces/default", "ns"); err != nil {
		t.Fatalf("put over mTLS: %v\n%s", err, p.out.String())
	}
	if r, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix()); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "ns" {
		t.Fatalf("get over mTLS: %v %v", r, err)
	}
	st, err := cli.Status(ctx, "https://"+client)
	if err != nil || st.Version != "3.7.3" {
		t.Fatalf("status %v: %v", st, err)
	}

	// No client certificate: refused, as etcd with --client-cert-auth.
	anon := dial(certtest.Pair{})
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	if _, err := anon.Get(sctx, "x"); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// Nor does the TLS port answer plain HTTP's probes.
	if resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Get("https://" + client + "/health"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("/health on the client URL served without a client certificate")
		}
	}
}
