package server_test

import (
	"bufio"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/server"
)

// mixinMetrics reads testdata/etcd-mixin-metrics.txt: one family name per
// line, # starting a comment.
func mixinMetrics(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("testdata/etcd-mixin-metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	if len(names) == 0 {
		t.Fatal("no metric names")
	}
	return names
}

// scrape fetches and parses a /metrics page.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// TestMetricNames scrapes every member of a running 3-member cluster,
// after some client traffic, and checks that each metric family the etcd
// mixin and the issue name is served with etcd's labels.
func TestMetricNames(t *testing.T) {
	c := newCluster(t, 3, bbolt.Engine(), func(cfg *server.Config) { cfg.Metrics = server.MetricsExtensive })
	cli := c.client()
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("k"), "=", 0)).
		Then(clientv3.OpPut("k", "1"), clientv3.OpGet("k")).Commit(); err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(ctx, "w")
	_ = wch

	names := mixinMetrics(t)
	// Peer round trips are measured when a member starts, then every few
	// seconds: wait for the first.
	deadline := time.Now().Add(15 * time.Second)
	for i, m := range c.members {
		url := m.ClientURLs()[0] + "/metrics"
		var fams map[string]*dto.MetricFamily
		for {
			fams = scrape(t, url)
			if f := fams["etcd_network_peer_round_trip_time_seconds"]; f != nil && len(f.Metric) >= 2 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, name := range names {
			if f := fams[name]; f == nil || len(f.Metric) == 0 {
				t.Errorf("member %d does not serve %s", i, name)
			}
		}
		// Labels the mixin groups or filters by.
		for _, want := range []struct{ family, label string }{
			{"etcd_network_peer_round_trip_time_seconds", "To"},
			{"etcd_network_peer_sent_failures_total", "To"},
			{"etcd_network_peer_sent_bytes_total", "To"},
			{"etcd_network_peer_received_bytes_total", "From"},
			{"grpc_server_handling_seconds", "grpc_method"},
			{"grpc_server_handled_total", "grpc_code"},
			{"etcd_cluster_version", "cluster_version"},
			{"etcd_server_id", "server_id"},
		} {
			f := fams[want.family]
			if f == nil || len(f.Metric) == 0 {
				continue
			}
			if !hasLabel(f.Metric[0], want.label) {
				t.Errorf("member %d: %s has no label %s", i, want.family, want.label)
			}
		}
		// The peer series are labelled by member ID (hex), as etcd's.
		if f := fams["etcd_network_peer_sent_bytes_total"]; f != nil {
			for _, m := range f.Metric {
				if v := labelValue(m, "To"); strings.Contains(v, ":") {
					t.Errorf("member %d: peer label To=%q is an address, not a member ID", i, v)
				}
			}
		}
	}
	// The member that served the writes counted them.
	fams := scrape(t, c.members[0].ClientURLs()[0]+"/metrics")
	var puts float64
	for _, m := range c.members {
		f := scrape(t, m.ClientURLs()[0]+"/metrics")["etcd_mvcc_put_total"]
		if f != nil {
			puts += f.Metric[0].GetCounter().GetValue()
		}
	}
	if puts != 2 {
		t.Errorf("etcd_mvcc_put_total summed over members = %v, want 2", puts)
	}
	// The client's requests and responses were counted (by the codec).
	for _, name := range []string{"etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total"} {
		var sum float64
		for _, m := range c.members {
			if f := scrape(t, m.ClientURLs()[0]+"/metrics")[name]; f != nil {
				sum += f.Metric[0].GetCounter().GetValue()
			}
		}
		if sum == 0 {
			t.Errorf("%s summed over members = 0", name)
		}
	}
	if v := fams["etcd_cluster_version"]; v != nil && labelValue(v.Metric[0], "cluster_version") != clusterMinor(server.ClusterVersion) {
		t.Errorf("etcd_cluster_version label %q, want %q", labelValue(v.Metric[0], "cluster_version"), clusterMinor(server.ClusterVersion))
	}
}

// TestEngineMetrics checks that each engine's own measurements are served
// as strata_engine_*{backend="<engine>"}.
func TestEngineMetrics(t *testing.T) {
	want := map[string]string{
		"bbolt":  "strata_engine_page_writes_total",
		"pebble": "strata_engine_compactions_total",
		"badger": "strata_engine_block_cache_hits_total",
	}
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, 1, eng, nil)
			if _, err := c.client().Put(ctxT(t), "k", "v"); err != nil {
				t.Fatal(err)
			}
			fams := scrape(t, c.members[0].ClientURLs()[0]+"/metrics")
			f := fams[want[eng.Name]]
			if f == nil || len(f.Metric) != 1 || labelValue(f.Metric[0], "backend") != eng.Name {
				t.Fatalf("%s: %v", want[eng.Name], f)
			}
		})
	}
}

func clusterMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	return parts[0] + "." + parts[1]
}

func hasLabel(m *dto.Metric, name string) bool {
	for _, l := range m.Label {
		if l.GetName() == name {
			return true
		}
	}
	return false
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
