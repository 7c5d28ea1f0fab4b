package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/internal/freeport"
	"github.com/strata-kv/strata/internal/sockopt"
)

// etcdFlags reads testdata/etcd-flags.txt: every flag etcd v3.7.3's
// server accepts and its default (see the file's header for how it was
// extracted from etcd's source).
func etcdFlags(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/etcd-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, def, _ := strings.Cut(line, "\t")
		out[name] = def
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("testdata/etcd-flags.txt lists %d flags; etcd v3.7.3 has 128", len(out))
	}
	return out
}

// otherValue is a value of d other than its default.
func otherValue(t *testing.T, d *flagDef) string {
	t.Helper()
	def := newValue(d.kind, d.def, d.choices...)
	switch d.kind {
	case kString:
		return "x"
	case kBool:
		return strconv.FormatBool(!def.b)
	case kUint, kUint64:
		return strconv.FormatUint(def.u+1, 10)
	case kUint32:
		return strconv.FormatUint(def.u-1, 10)
	case kInt, kInt64:
		return strconv.FormatInt(def.i+1, 10)
	case kDuration:
		return (def.d + time.Second).String()
	case kURLs:
		return "http://127.0.0.1:1"
	case kStrings, kUniqueStrings:
		return "a,b"
	case kSelect:
		for _, c := range d.choices {
			if c != def.text {
				return c
			}
		}
	case kFeatureGates:
		return "LeaseCheckpoint=true"
	}
	t.Fatalf("no other value for --%s", d.name)
	return ""
}

// TestEtcdFlagList walks etcd's full flag list: each flag exists with
// etcd's type and default, and is either honoured (a value other than
// its default is accepted) or refused with one line of its own naming it;
// at its default every flag is accepted.
func TestEtcdFlagList(t *testing.T) {
	etcd := etcdFlags(t)
	f := newFlagSet()
	for name := range f.defs {
		if _, ok := etcd[name]; !ok && !f.defs[name].strata {
			t.Errorf("--%s is in the flag table but not one of etcd's flags", name)
		}
	}
	for name, etcdDef := range etcd {
		t.Run(name, func(t *testing.T) {
			d, ok := f.defs[name]
			if !ok {
				t.Fatalf("etcd's --%s is not in the flag table", name)
			}
			if d.kind == kIgnored || d.name == "config-file" || d.name == "version" {
				return
			}
			// The same default, in etcd's spelling or Strata's.
			if got, want := newValue(d.kind, d.def, d.choices...).text, newValue(d.kind, etcdDef, d.choices...).text; got != want {
				t.Errorf("default %q, etcd's is %q", got, want)
			}
			// At the default value, given explicitly, it is accepted.
			// (etcd wants --advertise-client-urls with --listen-client-urls.)
			if _, err := parseMember([]string{"--" + name + "=" + etcdDef, "--advertise-client-urls=http://localhost:2379"}, nil); err != nil {
				t.Errorf("--%s=%s (the default): %v", name, etcdDef, err)
			}
			other := otherValue(t, d)
			args := []string{"--" + name + "=" + other}
			if name == "listen-client-urls" {
				args = append(args, "--advertise-client-urls="+other)
			}
			_, err := parseMember(args, nil)
			switch {
			case d.apply != nil && name != "feature-gates":
				if err != nil {
					t.Errorf("honoured --%s=%s: %v", name, other, err)
				}
			case err == nil:
				t.Errorf("--%s=%s: accepted, but Strata does not honour it", name, other)
			default:
				msg := err.Error()
				if !strings.HasPrefix(msg, "--"+name+" ") && !strings.HasPrefix(msg, "--"+name+"=") {
					t.Errorf("refusal %q does not start with the flag's name", msg)
				}
				if strings.Contains(msg, "\n") || !strings.Contains(msg, "not supported") {
					t.Errorf("refusal %q: want one line saying it is not supported", msg)
				}
			}
		})
	}
}

func TestFeatureGates(t *testing.T) {
	for _, tc := range []struct {
		gates   string
		wantErr string
	}{
		{"", ""},
		{"InitialCorruptCheck=false,TxnModeWriteWithSharedBuffer=true", ""}, // defaults
		{"TxnModeWriteWithSharedBuffer=false", ""},
		{"InitialCorruptCheck=true,CompactHashCheck=true", ""},
		{"LeaseCheckpoint=true", "--feature-gates=LeaseCheckpoint=true is not supported"},
		{"NoSuchGate=true", "unrecognized feature gate: NoSuchGate"},
		{"InitialCorruptCheck=maybe", "invalid value of InitialCorruptCheck=maybe"},
	} {
		_, err := parseMember([]string{"--feature-gates=" + tc.gates}, nil)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("--feature-gates=%s: error %v, want %q", tc.gates, err, tc.wantErr)
		}
	}
}

// TestCommandLine: etcd's parsing rules, from Go's flag package and
// etcdmain.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		check     func(*parsed) string // "" when right
		wantErr   string
		wantUsage bool
	}{
		{name: "defaults", args: nil, check: func(p *parsed) string {
			s := p.settings
			if s.server.Name != "default" || s.server.DataDir != "" || s.server.InitialCluster != "" ||
				strings.Join(s.server.ListenClientURLs, ",") != "http://localhost:2379" || s.backend != "bbolt" ||
				s.server.WatchProgressNotifyInterval != 10*time.Minute || s.log.format != "json" || s.server.EnableGRPCGateway == nil || !*s.server.EnableGRPCGateway {
				return "not etcd's defaults"
			}
			return ""
		}},
		{name: "given twice: the last wins", args: []string{"--name", "a", "--name=b"}, check: func(p *parsed) string {
			return want(p.settings.server.Name, "b")
		}},
		{name: "list given twice: the last replaces", args: []string{"--listen-metrics-urls=http://127.0.0.1:1,http://127.0.0.1:2", "--listen-metrics-urls=http://127.0.0.1:3"}, check: func(p *parsed) string {
			return want(strings.Join(p.settings.server.ListenMetricsURLs, ","), "http://127.0.0.1:3")
		}},
		{name: "urls are sorted and unique", args: []string{"--listen-peer-urls=http://b:2,http://a:1,http://b:2"}, check: func(p *parsed) string {
			return want(strings.Join(p.settings.server.ListenPeerURLs, ","), "http://a:1,http://b:2")
		}},
		{name: "single dash", args: []string{"-name", "s1", "-snapshot-count=5"}, check: func(p *parsed) string {
			return want(p.settings.server.Name+" "+strconv.FormatUint(p.settings.server.SnapshotCount, 10), "s1 5")
		}},
		{name: "snapshot catch-up entries", args: []string{"--snapshot-catchup-entries=7"}, check: func(p *parsed) string {
			return want(strconv.FormatUint(p.settings.server.SnapshotCatchUpEntries, 10), "7")
		}},
		{name: "a value that looks like a flag", args: []string{"--initial-cluster-token", "-name"}, check: func(p *parsed) string {
			return want(p.settings.server.InitialClusterToken, "-name")
		}},
		{name: "bool alone", args: []string{"--enable-pprof"}, check: func(p *parsed) string {
			return want(strconv.FormatBool(p.settings.server.EnablePprof), "true")
		}},
		{name: "milliseconds", args: []string{"--heartbeat-interval=50", "--election-timeout=600"}, check: func(p *parsed) string {
			return want(p.settings.server.HeartbeatInterval.String()+" "+p.settings.server.ElectionTimeout.String(), "50ms 600ms")
		}},
		{name: "grpc", args: []string{"--grpc-keepalive-min-time=1s", "--grpc-keepalive-interval=0", "--grpc-keepalive-timeout=3s", "--max-concurrent-streams=100", "--max-learners=2", "--pre-vote=false"}, check: func(p *parsed) string {
			s := p.settings.server
			return want(fmt.Sprint(s.GRPCKeepAliveMinTime, s.GRPCKeepAliveInterval, s.GRPCKeepAliveTimeout, s.MaxConcurrentStreams, s.MaxLearners, s.DisablePreVote), "1s -1ns 3s 100 2 true")
		}},
		{name: "compaction", args: []string{"--compaction-batch-limit=50", "--compaction-sleep-interval=1ms"}, check: func(p *parsed) string {
			return want(fmt.Sprint(p.settings.server.CompactionBatchLimit, p.settings.server.CompactionSleepInterval), "50 1ms")
		}},
		{name: "no learners", args: []string{"--max-learners=0"}, wantErr: "--max-learners 0 is not supported"},
		// --max-wals and --max-snapshots: etcd's 0 (unlimited) is
		// server.Config's negative value; --max-snapshots is deprecated.
		{name: "retention defaults", args: nil, check: func(p *parsed) string {
			if hasWarning(p, "--max-snapshots is deprecated") == "" {
				return "deprecation warning without --max-snapshots"
			}
			return want(fmt.Sprint(p.settings.server.MaxWALs, p.settings.server.MaxSnapshots), "5 5")
		}},
		{name: "retention", args: []string{"--max-wals=1", "--max-snapshots=2"}, check: func(p *parsed) string {
			if msg := hasWarning(p, "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8."); msg != "" {
				return msg
			}
			return want(fmt.Sprint(p.settings.server.MaxWALs, p.settings.server.MaxSnapshots), "1 2")
		}},
		{name: "retention unlimited", args: []string{"--max-wals=0", "--max-snapshots=0"}, check: func(p *parsed) string {
			return want(fmt.Sprint(p.settings.server.MaxWALs, p.settings.server.MaxSnapshots), "-1 -1")
		}},
		{name: "retention past MaxInt", args: []string{"--max-wals=18446744073709551615"}, check: func(p *parsed) string {
			return want(fmt.Sprint(p.settings.server.MaxWALs), "-1")
		}},
		{name: "negative max-wals", args: []string{"--max-wals=-1"}, wantErr: "--max-wals", wantUsage: true},
		{name: "ignored flag", args: []string{"--peer-heartbeat-interval", "--name=x"}, check: func(p *parsed) string {
			return hasWarning(p, "flag is no longer supported - ignoring")
		}},
		{name: "deprecated flag", args: []string{"--v2-deprecation=gone"}, check: func(p *parsed) string {
			return hasWarning(p, "--v2-deprecation is deprecated")
		}},
		{name: "help", args: []string{"-h"}, check: func(p *parsed) string { return want(strconv.FormatBool(p.help), "true") }},
		{name: "version", args: []string{"--version"}, check: func(p *parsed) string { return want(strconv.FormatBool(p.version), "true") }},
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantErr: "unknown flag: --no-such-flag", wantUsage: true},
		{name: "bad value", args: []string{"--snapshot-count=many"}, wantErr: "--snapshot-count", wantUsage: true},
		{name: "bad url", args: []string{"--listen-peer-urls=ftp://x:1"}, wantErr: "URL scheme must be http, https, unix, or unixs", wantUsage: true},
		{name: "bad cluster state", args: []string{"--initial-cluster-state=old"}, wantErr: "invalid value \"old\"", wantUsage: true},
		{name: "argument", args: []string{"--name", "a", "extra"}, wantErr: `"extra" is not a valid flag`},
		{name: "bool with a separate value", args: []string{"--enable-pprof", "false"}, wantErr: `"false" is not a valid flag`},
		{name: "listen without advertise", args: []string{"--listen-client-urls=http://127.0.0.1:1"}, wantErr: "--advertise-client-urls is required when --listen-client-urls is set explicitly"},
		{name: "zero heartbeat", args: []string{"--heartbeat-interval=0"}, wantErr: "--heartbeat-interval must be >0 (set to 0ms)"},
		{name: "long election", args: []string{"--election-timeout=60000"}, wantErr: "--election-timeout[60000ms] is too long, and should be set less than 50000ms"},
		{name: "discovery", args: []string{"--discovery-srv=example.com"}, wantErr: "--discovery-srv is not supported: list the members with --initial-cluster"},
		{name: "tls", args: []string{"--cert-file=/c.crt", "--key-file=/c.key", "--trusted-ca-file=/ca.crt", "--client-cert-auth", "--client-crl-file=/c.crl",
			"--peer-cert-file=/p.crt", "--peer-key-file=/p.key", "--peer-trusted-ca-file=/pca.crt", "--peer-client-cert-auth", "--peer-crl-file=/p.crl",
			"--peer-cert-allowed-cn=a,b", "--auto-tls", "--peer-auto-tls", "--self-signed-cert-validity=3", "--tls-min-version=TLS1.3",
			"--tls-max-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}, check: func(p *parsed) string {
			s := p.settings.server
			c, q := s.ClientTLSInfo, s.PeerTLSInfo
			return want(fmt.Sprintln(c.CertFile, c.KeyFile, c.TrustedCAFile, c.ClientCertAuth, c.CRLFile,
				q.CertFile, q.KeyFile, q.TrustedCAFile, q.ClientCertAuth, q.CRLFile, q.AllowedCNs,
				s.ClientAutoTLS, s.PeerAutoTLS, s.SelfSignedCertValidity, s.TLSMinVersion, s.TLSMaxVersion, s.CipherSuites),
				"/c.crt /c.key /ca.crt true /c.crl /p.crt /p.key /pca.crt true /p.crl [a b] true true 3 TLS1.3 TLS1.3 [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n")
		}},
		{name: "client http urls", args: []string{"--listen-client-http-urls=https://127.0.0.1:2390"}, check: func(p *parsed) string {
			return want(strings.Join(p.settings.server.ListenClientHTTPURLs, ","), "https://127.0.0.1:2390")
		}},
		{name: "peer SAN check", args: []string{"--peer-skip-client-san-verification"}, check: func(p *parsed) string {
			return want(strconv.FormatBool(p.settings.server.PeerTLSInfo.SkipClientSANVerify), "true")
		}},
		{name: "tls off at its default", args: []string{"--client-cert-auth=false", "--cert-file="}, check: func(*parsed) string { return "" }},
		{name: "cors and host whitelist", args: []string{"--cors=http://b.example:2,http://a.example:1", "--host-whitelist=localhost,etcd.local"}, check: func(p *parsed) string {
			return want(fmt.Sprint(p.settings.server.CORS, p.settings.server.HostWhitelist), "[http://a.example:1 http://b.example:2] [etcd.local localhost]")
		}},
		{name: "cors origin without a port", args: []string{"--cors=http://a.example"}, wantErr: "--cors", wantUsage: true},
		{name: "strict reconfig check off", args: []string{"--strict-reconfig-check=false"}, check: func(p *parsed) string {
			return want(strconv.FormatBool(p.settings.server.DisableStrictReconfigCheck), "true")
		}},
		{name: "memory mlock", args: []string{"--memory-mlock"}, check: func(p *parsed) string {
			return want(strconv.FormatBool(p.settings.server.EngineOptions.Mlock), "true")
		}},
		{name: "memory mlock on pebble", args: []string{"--memory-mlock", "--backend=pebble"}, wantErr: "--memory-mlock is not supported with --backend=pebble"},
		{name: "backend batching", args: []string{"--backend-batch-interval=250ms", "--backend-batch-limit=500"}, check: func(p *parsed) string {
			o := p.settings.server.EngineOptions
			return want(fmt.Sprint(o.BatchInterval, o.BatchLimit), "250ms 500")
		}},
		{name: "durability", args: []string{"--unsafe-no-fsync"}, check: func(p *parsed) string {
			return want(strconv.FormatBool(p.settings.server.UnsafeNoFsync), "true")
		}},
		{name: "auth", args: []string{"--auth-token=jwt,sign-method=RS256,priv-key=k.pem", "--bcrypt-cost=4", "--auth-token-ttl=60"}, check: func(p *parsed) string {
			c := p.settings.server
			return want(fmt.Sprintf("%s %d %v", c.AuthToken, c.BcryptCost, c.AuthTokenTTL), "jwt,sign-method=RS256,priv-key=k.pem 4 1m0s")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseMember(tc.args, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if errors.Is(err, errUsage) != tc.wantUsage {
					t.Errorf("usage error (exit 2): %v, want %v", errors.Is(err, errUsage), tc.wantUsage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(p); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func want(got, want string) string {
	if got != want {
		return "got " + strconv.Quote(got) + ", want " + strconv.Quote(want)
	}
	return ""
}

func hasWarning(p *parsed, prefix string) string {
	for _, w := range p.warnings {
		if strings.HasPrefix(w.msg, prefix) {
			return ""
		}
	}
	return "no warning " + strconv.Quote(prefix)
}

// kubeadmFlags is the command line of kubeadm's etcd static pod (kubeadm
// v1.3x for etcd 3.6+), its TLS flags set apart, and its URLs http.
var kubeadmFlags = []string{
	"--advertise-client-urls=http://10.0.0.1:2379",
	"--data-dir=/var/lib/etcd",
	"--feature-gates=InitialCorruptCheck=true",
	"--initial-advertise-peer-urls=http://10.0.0.1:2380",
	"--initial-cluster=cp1=http://10.0.0.1:2380",
	"--listen-client-urls=http://127.0.0.1:2379,http://10.0.0.1:2379",
	"--listen-metrics-urls=http://127.0.0.1:2381",
	"--listen-peer-urls=http://10.0.0.1:2380",
	"--name=cp1",
	"--snapshot-count=10000",
	"--watch-progress-notify-interval=5s",
}

var kubeadmTLSFlags = []string{
	"--cert-file=/etc/kubernetes/pki/etcd/server.crt",
	"--client-cert-auth=true",
	"--key-file=/etc/kubernetes/pki/etcd/server.key",
	"--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
	"--peer-client-cert-auth=true",
	"--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
	"--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
	"--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
}

// TestKubeadmCommandLine: kubeadm's etcd command line is taken as it is,
// its TLS flags too.
func TestKubeadmCommandLine(t *testing.T) {
	args := slices.Clone(kubeadmFlags)
	p, err := parseMember(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := p.settings.server
	if got := strings.Join([]string{s.Name, s.DataDir, strings.Join(s.ListenClientURLs, ","), s.WatchProgressNotifyInterval.String(),
		strconv.FormatBool(s.InitialCorruptCheck)}, " "); got != "cp1 /var/lib/etcd http://10.0.0.1:2379,http://127.0.0.1:2379 5s true" {
		t.Errorf("settings: %s", got)
	}
	p, err = parseMember(append(args, kubeadmTLSFlags...), nil)
	if err != nil {
		t.Fatalf("kubeadm's TLS flags: %v", err)
	}
	c, q := p.settings.server.ClientTLSInfo, p.settings.server.PeerTLSInfo
	if got := fmt.Sprint(c.CertFile, c.KeyFile, c.TrustedCAFile, c.ClientCertAuth, " ", q.CertFile, q.KeyFile, q.TrustedCAFile, q.ClientCertAuth); got !=
		"/etc/kubernetes/pki/etcd/server.crt/etc/kubernetes/pki/etcd/server.key/etc/kubernetes/pki/etcd/ca.crttrue /etc/kubernetes/pki/etcd/peer.crt/etc/kubernetes/pki/etcd/peer.key/etc/kubernetes/pki/etcd/ca.crttrue" {
		t.Errorf("kubeadm's TLS settings: %s", got)
	}
}

// TestEnvironment: ETCD_* variables as etcd's flags.SetFlagsFromEnv,
// STRATA_BACKEND for --backend.
func TestEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		check   func(*parsed) string
		wantErr string
	}{
		{name: "mapped", env: []string{"ETCD_NAME=s1", "ETCD_DATA_DIR=/d", "ETCD_INITIAL_CLUSTER_STATE=existing", "ETCD_ENABLE_PPROF=true", "ETCD_SNAPSHOT_COUNT=7"}, check: func(p *parsed) string {
			s := p.settings.server
			return want(s.Name+" "+s.DataDir+" "+s.InitialClusterState+" "+strconv.FormatBool(s.EnablePprof)+" "+strconv.FormatUint(s.SnapshotCount, 10), "s1 /d existing true 7")
		}},
		{name: "retention", env: []string{"ETCD_MAX_WALS=0", "ETCD_MAX_SNAPSHOTS=3"}, check: func(p *parsed) string {
			if msg := hasWarning(p, "--max-snapshots is deprecated"); msg != "" {
				return msg
			}
			return want(fmt.Sprint(p.settings.server.MaxWALs, p.settings.server.MaxSnapshots), "-1 3")
		}},
		{name: "used is logged", env: []string{"ETCD_NAME=s1"}, check: func(p *parsed) string { return hasWarning(p, "recognized and used environment variable") }},
		{name: "empty is not used", env: []string{"ETCD_NAME="}, check: func(p *parsed) string { return want(p.settings.server.Name, "default") }},
		{name: "shadowed by a flag", args: []string{"--name=a"}, env: []string{"ETCD_NAME=b"},
			wantErr: "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag): ETCD_NAME"},
		{name: "shadowed even empty", args: []string{"--name=a"}, env: []string{"ETCD_NAME="}, wantErr: "conflicting environment variable"},
		{name: "bad value", env: []string{"ETCD_SNAPSHOT_COUNT=lots"}, wantErr: `invalid value "lots" for ETCD_SNAPSHOT_COUNT`},
		{name: "refused", env: []string{"ETCD_DISCOVERY_SRV=example.com"}, wantErr: "--discovery-srv is not supported"},
		{name: "listen without advertise", env: []string{"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:1"}, wantErr: "--advertise-client-urls is required"},
		{name: "unknown is warned about", env: []string{"ETCD_NO_SUCH=1"}, check: func(p *parsed) string { return hasWarning(p, "unrecognized environment variable") }},
		{name: "ETCD_VERSION is special", env: []string{"ETCD_VERSION=3.7.3"}, check: func(p *parsed) string {
			if p.version {
				return "ETCD_VERSION printed the version"
			}
			return hasWarning(p, "cannot set special environment variable")
		}},
		{name: "STRATA_BACKEND", env: []string{"STRATA_BACKEND=pebble"}, check: func(p *parsed) string { return want(p.settings.backend, "pebble") }},
		{name: "ETCD_BACKEND is not ours", env: []string{"ETCD_BACKEND=pebble"}, check: func(p *parsed) string {
			if msg := want(p.settings.backend, "bbolt"); msg != "" {
				return msg
			}
			return hasWarning(p, "unrecognized environment variable")
		}},
		{name: "STRATA_BACKEND shadowed", args: []string{"--backend=badger"}, env: []string{"STRATA_BACKEND=pebble"}, wantErr: "shadowed by corresponding command-line flag (either unset environment variable or disable flag): STRATA_BACKEND"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseMember(tc.args, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(p); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "etcd.conf.yml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigFile: etcd's YAML, and etcd's rule that with a config file
// the other flags and the environment are ignored.
func TestConfigFile(t *testing.T) {
	sample := "testdata/etcd.conf.yml"
	for _, tc := range []struct {
		name    string
		yaml    string // "" for the sample
		args    []string
		env     []string
		check   func(*parsed) string
		wantErr string
	}{
		{name: "sample", check: func(p *parsed) string {
			s := p.settings
			got := strings.Join([]string{s.server.Name, strings.Join(s.server.ListenClientURLs, ","), s.server.InitialCluster,
				s.server.AutoCompactionRetention, s.server.WatchProgressNotifyInterval.String(), strings.Join(s.log.outputs, ","),
				strconv.FormatBool(s.server.EnablePprof), s.backend}, " ")
			return want(got, "infra0 http://127.0.0.1:12379 infra0=http://127.0.0.1:12380 1 10m0s stderr true bbolt")
		}},
		{name: "other flags and the environment are ignored", args: []string{"--name=other", "--discovery-srv=x"}, env: []string{"ETCD_SNAPSHOT_COUNT=3", "STRATA_BACKEND=pebble"}, check: func(p *parsed) string {
			return want(p.settings.server.Name+" "+strconv.FormatUint(p.settings.server.SnapshotCount, 10)+" "+p.settings.backend, "infra0 10000 bbolt")
		}},
		{name: "ETCD_CONFIG_FILE", args: nil, env: []string{"ETCD_CONFIG_FILE=" + sample, "ETCD_NAME=other"}, check: func(p *parsed) string {
			return want(p.settings.server.Name, "infra0")
		}},
		{name: "logged", check: func(p *parsed) string { return hasWarning(p, "loaded server configuration") }},
		{name: "unknown key is ignored", yaml: "name: x\nno-such-key: 1\nproxy: 'on'\n", check: func(p *parsed) string {
			if msg := want(p.settings.server.Name, "x"); msg != "" {
				return msg
			}
			return hasWarning(p, "unknown configuration key ignored")
		}},
		{name: "flags that have no key are ignored", yaml: "name: x\nraft-read-timeout: 1\ndiscovery-fallback: proxy\n", check: func(p *parsed) string {
			return hasWarning(p, "unknown configuration key ignored")
		}},
		{name: "listen without advertise is etcd's default", yaml: "listen-client-urls: http://127.0.0.1:1\n", check: func(p *parsed) string {
			return want(strings.Join(p.settings.server.AdvertiseClientURLs, ","), "")
		}},
		{name: "nanoseconds", yaml: "watch-progress-notify-interval: 5000000000\n", check: func(p *parsed) string {
			return want(p.settings.server.WatchProgressNotifyInterval.String(), "5s")
		}},
		{name: "feature gates", yaml: "feature-gates: TxnModeWriteWithSharedBuffer=false\n", check: func(p *parsed) string { return "" }},
		{name: "refused feature gate", yaml: "feature-gates: LeaseCheckpoint=true\n", wantErr: "--feature-gates=LeaseCheckpoint=true is not supported"},
		{name: "durations", yaml: "corrupt-check-time: 180000000000\ncompact-hash-check-time: 30000000000\nfeature-gates: InitialCorruptCheck=true\n", check: func(p *parsed) string {
			s := p.settings.server
			return want(s.CorruptCheckTime.String()+" "+s.CompactHashCheckTime.String()+" "+strconv.FormatBool(s.InitialCorruptCheck), "3m0s 30s true")
		}},
		{name: "tls under client-transport-security", yaml: "client-transport-security:\n  cert-file: /etc/etcd/server.crt\n", check: func(p *parsed) string {
			return want(p.settings.server.ClientTLSInfo.CertFile, "/etc/etcd/server.crt")
		}},
		{name: "tls under peer-transport-security", yaml: "peer-transport-security:\n  client-cert-auth: true\n  allowed-cn: [m1, m2]\n", check: func(p *parsed) string {
			q := p.settings.server.PeerTLSInfo
			return want(fmt.Sprint(q.ClientCertAuth, q.AllowedCNs), "true [m1 m2]")
		}},
		{name: "tls key without a flag", yaml: "client-transport-security:\n  allowed-cn: [a]\n", wantErr: "client-transport-security.allowed-cn is not supported yet"},
		{name: "discovery", yaml: "discovery-config:\n  token: t\n  client:\n    endpoints: [http://127.0.0.1:1]\n", wantErr: "not supported: list the members with --initial-cluster"},
		{name: "socket options", yaml: "socket-options:\n  reuse-port: true\n  reuse-address: true\n", check: func(p *parsed) string {
			return want(fmt.Sprint(p.settings.server.SocketReusePort, p.settings.server.SocketReuseAddress), "true true")
		}},
		{name: "cors and host whitelist", yaml: "cors: 'http://a.example:1'\nhost-whitelist: 'localhost,etcd.local'\n", check: func(p *parsed) string {
			return want(fmt.Sprint(p.settings.server.CORS, p.settings.server.HostWhitelist), "[http://a.example:1] [etcd.local localhost]")
		}},
		{name: "retention", yaml: "max-wals: 0\nmax-snapshots: 1\n", check: func(p *parsed) string {
			if msg := hasWarning(p, "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8."); msg != "" {
				return msg
			}
			return want(fmt.Sprint(p.settings.server.MaxWALs, p.settings.server.MaxSnapshots), "-1 1")
		}},
		{name: "negative max-wals", yaml: "max-wals: -2\n", wantErr: "max-wals"},
		{name: "bad value", yaml: "snapshot-count: many\n", wantErr: "snapshot-count"},
		{name: "not yaml", yaml: "name: [\n", wantErr: "etcd.conf.yml"},
		{name: "missing file", args: []string{"--config-file=/no/such/file.yml"}, wantErr: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := sample
			if tc.yaml != "" {
				path = writeFile(t, tc.yaml)
			}
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "--config-file") && !strings.Contains(strings.Join(tc.env, " "), "ETCD_CONFIG_FILE") {
				args = append([]string{"--config-file", path}, args...)
			}
			p, err := parseMember(args, tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(p); msg != "" {
				t.Error(msg)
			}
		})
	}
}

// TestConfigFileStartsMember starts a real member from the sample config
// file (its ports replaced by free ones) and uses it through clientv3.
func TestConfigFileStartsMember(t *testing.T) {
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/etcd.conf.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.NewReplacer("127.0.0.1:12379", addrs[0], "127.0.0.1:12380", addrs[1],
		"data-dir:\n", "data-dir: "+filepath.Join(dir, "infra0.strata")+"\n").Replace(string(b))
	p, err := parseMember([]string{"--config-file", writeFile(t, text)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m, err := launch(p, &logs)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	select {
	case <-m.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("member not ready after 30s")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + addrs[0]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "foo", "bar"); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Members) != 1 || resp.Members[0].Name != "infra0" {
		t.Fatalf("members %v, want infra0", resp.Members)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	// The log is JSON lines with etcd's keys, and says where the
	// configuration came from.
	if !regexp.MustCompile(`(?m)^\{"level":"info","ts":"[^"]+Z","caller":"[^"]+","msg":"loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"`).Match(logs.Bytes()) {
		t.Errorf("log lacks etcd's line about the config file:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "infra0.strata", "member")); err != nil {
		t.Errorf("data-dir from the file: %v", err)
	}
}

func TestVersion(t *testing.T) {
	var b bytes.Buffer
	writeVersion(&b)
	re := regexp.MustCompile(`^etcd Version: 3\.\d+\.\d+\nGit SHA: .+\nGo Version: go.+\nGo OS/Arch: \w+/\w+\nStrata Version: .+\n$`)
	if !re.Match(b.Bytes()) {
		t.Errorf("--version:\n%s", b.String())
	}
}

// TestHelp: every flag is in --help, in etcd's groups; --backend is marked
// as Strata's.
func TestHelp(t *testing.T) {
	var b bytes.Buffer
	writeHelp(&b)
	help := b.String()
	for name := range etcdFlags(t) {
		if slicesContains(ignoredFlags, name) {
			continue
		}
		if !strings.Contains(help, "\n  --"+name+" ") {
			t.Errorf("--help lacks --%s", name)
		}
	}
	for _, g := range []string{"Member:", "Clustering:", "Security:", "Auth:", "Profiling and Monitoring:", "Logging:", "Distributed tracing:", "Features:", "Unsafe feature:"} {
		if !strings.Contains(help, "\n"+g+"\n") {
			t.Errorf("--help lacks the group %s", g)
		}
	}
	if !strings.Contains(help, "--backend 'bbolt' [Strata]") {
		t.Error("--help does not mark --backend as Strata's")
	}
}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestWALDir starts a real member with --wal-dir: its raft log is there,
// not under the data directory, and it restarts from it; a member whose
// log is in the data directory is refused a --wal-dir without one.
func TestWALDir(t *testing.T) {
	dir := t.TempDir()
	dataDir, walDir := filepath.Join(dir, "data"), filepath.Join(dir, "wal")
	start := func(extra ...string) (*member, string, error) {
		t.Helper()
		m, curl, _, err := startFlagsMember(t, dataDir, extra...)
		return m, curl, err
	}
	kv := func(curl string, put bool) string {
		t.Helper()
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{curl}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if put {
			if _, err := cli.Put(ctx, "k", "v"); err != nil {
				t.Fatal(err)
			}
		}
		g, err := cli.Get(ctx, "k")
		if err != nil || len(g.Kvs) != 1 {
			t.Fatalf("get: %v %v", g, err)
		}
		return string(g.Kvs[0].Value)
	}

	m, curl, err := start("--wal-dir=" + walDir)
	if err != nil {
		t.Fatal(err)
	}
	kv(curl, true)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !hasEntries(walDir) {
		t.Fatalf("--wal-dir %s is empty", walDir)
	}
	if hasEntries(filepath.Join(dataDir, "member", "raft", "log")) {
		t.Fatal("the raft log is in the data directory too")
	}
	m, curl, err = start("--wal-dir=" + walDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := kv(curl, false); got != "v" {
		t.Fatalf("after a restart: %q", got)
	}
	m.Close()

	// A member whose log is in its data directory.
	dataDir = filepath.Join(dir, "data2")
	m, _, err = start()
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, _, err := start("--wal-dir=" + filepath.Join(dir, "wal2")); err == nil || !strings.Contains(err.Error(), "has no raft log") {
		t.Fatalf("--wal-dir without the log: %v", err)
	}
}

func hasEntries(dir string) bool {
	ents, err := os.ReadDir(dir)
	return err == nil && len(ents) > 0
}

// startFlagsMember starts a one-member cluster "w" on dataDir from etcd
// flags (free ports, fast timers, and extra) and waits until it is ready.
func startFlagsMember(t *testing.T, dataDir string, extra ...string) (m *member, curl, purl string, err error) {
	t.Helper()
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	curl, purl = "http://"+addrs[0], "http://"+addrs[1]
	args := append([]string{"--name=w", "--data-dir=" + dataDir, "--listen-client-urls=" + curl, "--advertise-client-urls=" + curl,
		"--listen-peer-urls=" + purl, "--initial-advertise-peer-urls=" + purl, "--initial-cluster=w=" + purl,
		"--heartbeat-interval=50", "--election-timeout=500"}, extra...)
	p, err := parseMember(args, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err = launch(p, io.Discard)
	if err != nil {
		return nil, "", "", err
	}
	select {
	case <-m.ReadyNotify():
	case <-time.After(30 * time.Second):
		m.Close()
		t.Fatal("member not ready after 30s")
	}
	return m, curl, purl, nil
}

// TestSocketReusePort: with --socket-reuse-port, another SO_REUSEPORT
// socket binds the member's client and peer addresses; without, none.
func TestSocketReusePort(t *testing.T) {
	for _, reuse := range []bool{true, false} {
		m, curl, purl, err := startFlagsMember(t, filepath.Join(t.TempDir(), "w"), "--socket-reuse-port="+strconv.FormatBool(reuse))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{curl, purl} {
			l, err := sockopt.Listen(strings.TrimPrefix(u, "http://"), sockopt.Options{ReusePort: true})
			if err == nil {
				l.Close()
			}
			if (err == nil) != reuse {
				t.Errorf("--socket-reuse-port=%v: binding %s again: %v", reuse, u, err)
			}
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
