package versus

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Options are the benchmark tool's settings every workload shares.
type Options struct {
	Conns, Clients int
	// Total is the number of requests of put, txn-put and range.
	Total            int
	KeySize, ValSize int
	// KeySpace is the key space of put and txn-put.
	KeySpace int
	// WatchPutTotal puts at WatchPutRate a second drive watch-latency, to
	// WatchStreams streams of WatchersPerStream watchers each.
	WatchPutTotal, WatchPutRate     int
	WatchStreams, WatchersPerStream int
	// ResourceKeys keys of ResourceKeySize bytes are loaded by the
	// resources workload, then ResourceRevisions more puts made to them.
	ResourceKeys, ResourceKeySize, ResourceRevisions int
	// K8sRecords objects are loaded for the k8s workload, then
	// K8sClients clients run its mix for K8sDuration.
	K8sRecords, K8sClients int
	K8sDuration            time.Duration
}

// DefaultOptions are the performance bar's settings: --conns=10
// --clients=100, 8-byte keys and 256-byte values, 10000 keys; a moderate
// watch-latency run (5 s of puts, 100 watchers); the k8s mix on 10000
// objects with 16 clients for 10 s (kvbench run's defaults).
func DefaultOptions() Options {
	return Options{Conns: 10, Clients: 100, Total: 100000, KeySize: 8, ValSize: 256, KeySpace: 10000,
		WatchPutTotal: 500, WatchPutRate: 100, WatchStreams: 10, WatchersPerStream: 10,
		ResourceKeys: 1000000, ResourceKeySize: 16, ResourceRevisions: 1000000,
		K8sRecords: 10000, K8sClients: 16, K8sDuration: 10 * time.Second}
}

// RangeKey is the key the range workloads read; it is put (with a
// value of ValSize bytes) with etcdctl before they run, as etcd's
// benchmark docs do.
const RangeKey = "foo"

// Workload is one of etcd's benchmark tool's commands, with the bar
// Strata must meet against etcd.
type Workload struct {
	Name string
	// Section is the summary in the tool's output that measures the
	// workload ("" for the only one).
	Section string
	// Preload: put RangeKey before the run.
	Preload bool
	// Resources: the run measures resources (see Resources) instead of
	// running one benchmark; each figure's bar is at most etcd's.
	Resources bool
	// Preset names a kvbench workload (bench.Preset) that kvbench runs
	// itself, through the same client (bench.ClientStore) against either
	// server, instead of etcd's benchmark tool: its throughput, latencies
	// and failed requests become the run's summary.
	Preset string
	// MinThroughput is the lowest acceptable median Strata/etcd
	// throughput ratio, MaxP99 the highest acceptable median p99 ratio;
	// zero means no bar on that figure.
	MinThroughput, MaxP99 float64
	args                  func(o Options) []string
}

func flagArgs(kv ...any) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, fmt.Sprintf("--%s=%v", kv[i], kv[i+1]))
	}
	return out
}

var workloads = []Workload{
	{Name: "put", MinThroughput: 1.3, MaxP99: 1, args: func(o Options) []string {
		return append([]string{"put"}, flagArgs("key-size", o.KeySize, "val-size", o.ValSize,
			"key-space-size", o.KeySpace, "total", o.Total)...)
	}},
	{Name: "txn-put", MinThroughput: 1.3, args: func(o Options) []string {
		return append([]string{"txn-put"}, flagArgs("key-size", o.KeySize, "val-size", o.ValSize,
			"key-space-size", o.KeySpace, "total", o.Total)...)
	}},
	{Name: "range-l", Preload: true, MinThroughput: 1.3, args: func(o Options) []string {
		return append([]string{"range", RangeKey}, flagArgs("consistency", "l", "total", o.Total)...)
	}},
	{Name: "range-s", Preload: true, MinThroughput: 1.2, args: func(o Options) []string {
		return append([]string{"range", RangeKey}, flagArgs("consistency", "s", "total", o.Total)...)
	}},
	{Name: "watch-latency", Section: "Watch events summary", MaxP99: 1, args: func(o Options) []string {
		return append([]string{"watch-latency"}, flagArgs("put-total", o.WatchPutTotal, "put-rate", o.WatchPutRate,
			"streams", o.WatchStreams, "watchers-per-stream", o.WatchersPerStream,
			"key-size", o.KeySize, "val-size", o.ValSize)...)
	}},
	{Name: "k8s", Preset: "k8s", MinThroughput: 1.3},
	{Name: "resources", Resources: true},
}

// Workloads lists the workloads versus knows, in the bar's order.
func Workloads() []Workload { return slices.Clone(workloads) }

// LookupWorkload finds a workload by name.
func LookupWorkload(name string) (Workload, bool) {
	for _, w := range workloads {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// Args is the benchmark tool's command line for w after --endpoints; for
// a preset workload, kvbench's own flags that describe the run.
func (w Workload) Args(o Options) []string {
	if w.Preset != "" {
		return append([]string{"--mode=endpoints", "--workload=" + w.Preset},
			flagArgs("records", o.K8sRecords, "clients", o.K8sClients, "duration", o.K8sDuration)...)
	}
	args := flagArgs("conns", o.Conns, "clients", o.Clients)
	args = append(args, "--precise")
	if w.args == nil {
		return args
	}
	return append(args, w.args(o)...)
}

// Bar describes the bar, e.g. "throughput >= 1.30x, p99 <= 1.00x".
func (w Workload) Bar() string {
	if w.Resources {
		return "each figure <= 1.00x"
	}
	var parts []string
	if w.MinThroughput > 0 {
		parts = append(parts, fmt.Sprintf("throughput >= %.2fx", w.MinThroughput))
	}
	if w.MaxP99 > 0 {
		parts = append(parts, fmt.Sprintf("p99 <= %.2fx", w.MaxP99))
	}
	return strings.Join(parts, ", ")
}

// barOrDash is w.Bar(), or "-" for a workload without a bar.
func barOrDash(w Workload) string {
	if b := w.Bar(); b != "" {
		return b
	}
	return "-"
}

// Met tells whether the median ratios meet the bar.
func (w Workload) Met(throughput, p99 float64) bool {
	if w.MinThroughput > 0 && !(throughput >= w.MinThroughput) {
		return false
	}
	if w.MaxP99 > 0 && !(p99 > 0 && p99 <= w.MaxP99) {
		return false
	}
	return true
}

// WorkloadNames lists the workloads' names.
func WorkloadNames() []string {
	var names []string
	for _, w := range workloads {
		names = append(names, w.Name)
	}
	return names
}
