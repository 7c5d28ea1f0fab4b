package versus

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	bins := func(c Config) Config {
		c.Etcd, c.Strata, c.Bench = "/bin/etcd", "/bin/strata", "/bin/benchmark"
		return c
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", bins(Config{}), true},
		{"three members, every workload", bins(Config{Nodes: 3, Workloads: WorkloadNames()}), true},
		{"custom arguments", bins(Config{BenchArgs: []string{"put"}}), true},
		{"no etcd", Config{Strata: "s", Bench: "b"}, false},
		{"no strata", Config{Etcd: "e", Bench: "b"}, false},
		{"no benchmark tool", Config{Etcd: "e", Strata: "s"}, false},
		{"two members", bins(Config{Nodes: 2}), false},
		{"unknown workload", bins(Config{Workloads: []string{"put", "range"}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.EnsureDefaults()
			err := c.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestConfigDefaults checks the defaults Run fills in, and that the
// caller's slices are left alone.
func TestConfigDefaults(t *testing.T) {
	c := Config{Etcd: "/opt/etcd/etcd"}
	c.EnsureDefaults()
	if c.Rounds != 5 || c.Nodes != 1 || c.Options != DefaultOptions() || !slices.Equal(c.Workloads, []string{"put"}) || c.Etcdctl != "" {
		t.Fatalf("defaults: %+v", c)
	}
	names := []string{"range-l"}
	c = Config{Etcd: "/opt/etcd/etcd", Workloads: names}
	c.EnsureDefaults()
	if c.Etcdctl != "/opt/etcd/etcdctl" {
		t.Fatalf("Etcdctl for a range workload: %q", c.Etcdctl)
	}
	if _, err := Run(context.Background(), Config{Nodes: 2, Workloads: names}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Run with --nodes=2: %v, want ErrInvalidConfig", err)
	}
	if !slices.Equal(names, []string{"range-l"}) {
		t.Fatalf("caller's workloads changed to %q", names)
	}
}
