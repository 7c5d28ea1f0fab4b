package versus

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/strata-kv/strata/internal/optionstest"
)

func TestConfigValidate(t *testing.T) {
	bins := func(c Config) Config {
		c.Etcd, c.Strata, c.Bench = "/bin/etcd", "/bin/strata", "/bin/benchmark"
		return c
	}
	optionstest.Validate(t, ErrInvalidConfig, []optionstest.Case[Config]{
		{Name: "defaults", Opts: bins(Config{}), OK: true},
		{Name: "three members, every workload", Opts: bins(Config{Nodes: 3, Workloads: WorkloadNames()}), OK: true},
		{Name: "custom arguments", Opts: bins(Config{BenchArgs: []string{"put"}}), OK: true},
		{Name: "no etcd", Opts: Config{Strata: "s", Bench: "b"}},
		{Name: "no strata", Opts: Config{Etcd: "e", Bench: "b"}},
		{Name: "no benchmark tool", Opts: Config{Etcd: "e", Strata: "s"}},
		{Name: "two members", Opts: bins(Config{Nodes: 2})},
		{Name: "unknown workload", Opts: bins(Config{Workloads: []string{"put", "range"}})},
		{Name: "k8s over TLS", Opts: bins(Config{Workloads: []string{"put", "k8s"}, TLS: true})},
		{Name: "put over TLS", Opts: bins(Config{Workloads: []string{"put"}, TLS: true}), OK: true},
		{Name: "k8s without clients", Opts: bins(Config{Workloads: []string{"k8s"}, Options: func() Options {
			o := DefaultOptions()
			o.K8sClients = 0
			return o
		}()})},
	})
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
