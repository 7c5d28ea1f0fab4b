package server

import (
	"errors"
	"testing"
	"time"

	"github.com/strata-kv/strata/backends/bbolt"
)

// TestConfigValidate checks the configurations Validate refuses, with
// the texts (etcd's, naming the flag) cmd/strata prints.
func TestConfigValidate(t *testing.T) {
	valid := func(tweak func(*Config)) Config {
		c := Config{Engine: bbolt.Engine()}
		if tweak != nil {
			tweak(&c)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for a valid configuration
	}{
		{"defaults", valid(nil), ""},
		{"three members", valid(func(c *Config) {
			c.Name = "b"
			c.ListenPeerURLs = []string{"http://127.0.0.1:2480"}
			c.InitialCluster = "a=http://127.0.0.1:2380,b=http://127.0.0.1:2480,c=http://127.0.0.1:2580"
			c.InitialClusterState = ClusterStateExisting
		}), ""},
		{"revision compaction", valid(func(c *Config) {
			c.AutoCompactionMode, c.AutoCompactionRetention = CompactionRevision, "1000"
		}), ""},
		{"periodic compaction as a duration", valid(func(c *Config) { c.AutoCompactionRetention = "30m" }), ""},
		{"no engine", Config{}, "server: config needs an Engine"},
		{"election timeout", valid(func(c *Config) { c.ElectionTimeout = 400 * time.Millisecond }),
			"server: --election-timeout[400ms] should be at least 5 times --heartbeat-interval[100ms]"},
		{"client TLS", valid(func(c *Config) { c.ListenClientURLs = []string{"https://127.0.0.1:2379"} }),
			`TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme`},
		{"client scheme", valid(func(c *Config) { c.AdvertiseClientURLs = []string{"unix://x:1"} }),
			`server: --advertise-client-urls "unix://x:1": URL scheme must be http or https`},
		{"metrics without a port", valid(func(c *Config) { c.ListenMetricsURLs = []string{"http://127.0.0.1"} }),
			`server: --listen-metrics-urls "http://127.0.0.1": expected host:port (address 127.0.0.1: missing port in address)`},
		{"two peer URLs", valid(func(c *Config) {
			c.ListenPeerURLs = []string{"http://127.0.0.1:2380", "http://127.0.0.1:2381"}
		}), "server: --listen-peer-urls: exactly one URL is supported, got 2"},
		{"peer URL with a path", valid(func(c *Config) { c.InitialAdvertisePeerURLs = []string{"http://127.0.0.1:2380/raft"} }),
			`server: --initial-advertise-peer-urls: URL must not contain a path: http://127.0.0.1:2380/raft`},
		{"client URL with a slash", valid(func(c *Config) { c.AdvertiseClientURLs = []string{"http://127.0.0.1:2379/"} }),
			`server: --advertise-client-urls: URL must not contain a path: http://127.0.0.1:2379/`},
		{"bad cluster entry", valid(func(c *Config) { c.InitialCluster = "default" }),
			`server: --initial-cluster: bad entry "default", want name=URL`},
		{"cluster without this member", valid(func(c *Config) { c.InitialCluster = "other=http://127.0.0.1:2380" }),
			`server: --initial-cluster "other=http://127.0.0.1:2380" does not name this member "default"`},
		{"cluster with other URLs", valid(func(c *Config) { c.InitialCluster = "default=http://127.0.0.1:2390" }),
			"server: --initial-cluster has default=[http://127.0.0.1:2390] but --initial-advertise-peer-urls is [http://127.0.0.1:2380]"},
		{"cluster state", valid(func(c *Config) { c.InitialClusterState = "old" }),
			`server: --initial-cluster-state must be "new" or "existing", got "old"`},
		{"compaction mode", valid(func(c *Config) { c.AutoCompactionMode = "daily" }),
			`server: --auto-compaction-mode must be "periodic" or "revision", got "daily"`},
		{"periodic retention", valid(func(c *Config) { c.AutoCompactionRetention = "1d" }),
			`server: --auto-compaction-retention "1d": want hours or a duration`},
		{"negative retention", valid(func(c *Config) { c.AutoCompactionRetention = "-1h" }),
			`server: --auto-compaction-retention "-1h" is negative`},
		{"revision retention", valid(func(c *Config) {
			c.AutoCompactionMode, c.AutoCompactionRetention = CompactionRevision, "1h"
		}), `server: --auto-compaction-retention "1h": want a number of revisions`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.EnsureDefaults()
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || err.Error() != tc.want {
				t.Fatalf("Validate: %v, want %q wrapping ErrInvalidConfig", err, tc.want)
			}
		})
	}
}

// TestConfigDefaults checks what EnsureDefaults fills in from other
// fields, and that Start's parsed configuration keeps the caller's URLs.
func TestConfigDefaults(t *testing.T) {
	c := Config{Name: "m1", ListenPeerURLs: []string{"http://127.0.0.1:2480"}, Engine: bbolt.Engine()}
	c.EnsureDefaults()
	if c.DataDir != "m1.strata" || c.InitialCluster != "m1=http://127.0.0.1:2480" ||
		c.InitialAdvertisePeerURLs[0] != "http://127.0.0.1:2480" || c.AutoCompactionRetention != "0" ||
		c.MaxSnapshots != 5 || c.MaxWALs != 5 {
		t.Fatalf("defaults: %+v", c)
	}
	// Negative: unlimited (etcd's 0), kept.
	unlimited := Config{MaxSnapshots: -1, MaxWALs: -1}
	unlimited.EnsureDefaults()
	if unlimited.MaxSnapshots != -1 || unlimited.MaxWALs != -1 {
		t.Fatalf("unlimited retention became %d snapshots, %d WAL files", unlimited.MaxSnapshots, unlimited.MaxWALs)
	}
	pc, err := newConfig(Config{Engine: bbolt.Engine(), AutoCompactionMode: CompactionRevision, AutoCompactionRetention: "10"})
	if err != nil {
		t.Fatal(err)
	}
	if pc.listenPeer.Host != "127.0.0.1:2380" || pc.compactRevs != 10 || pc.AdvertiseClientURLs != nil {
		t.Fatalf("parsed: %+v", pc)
	}
	if _, err := newConfig(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("newConfig without an engine: %v", err)
	}
}
