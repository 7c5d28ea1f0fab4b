package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-kv/strata/bench"
	"github.com/strata-kv/strata/cmd/kvbench/internal/versus"
)

func newReportCmd() *cobra.Command {
	var htmlOut, pngDir, baseline string
	cmd := &cobra.Command{
		Use:   "report run.json",
		Short: "Render a saved JSON report: tables on stdout, and --html and --png",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			fh, err := os.Open(args[0])
			if err != nil {
				return err
			}
			report, err := bench.ReadReport(fh)
			fh.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if baseline != "" {
				report.Baseline = baseline
			}
			report.WriteTables(os.Stdout, report.Baseline)
			return writeRendered(report, htmlOut, pngDir)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&htmlOut, "html", "", "write the report as a self-contained HTML page to this file")
	fl.StringVar(&pngDir, "png", "", "write the report's charts as PNG files into this directory")
	fl.StringVar(&baseline, "baseline", "", "target the ratios are computed against (default: the report's)")
	return cmd
}

func newVersusCmd() *cobra.Command {
	var (
		cfg     versus.Config
		jsonOut string
	)
	opts := versus.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "versus --etcd PATH --strata PATH --bench PATH",
		Short: "Strata against etcd on etcd's own benchmark tool, in alternating rounds",
		Long: `versus starts a fresh etcd cluster and a fresh Strata cluster (--nodes=1 or 3
members on free loopback ports, each member with its own data directory),
one at a time, and runs etcd's benchmark tool (tools/benchmark) against all
their client endpoints, for --rounds rounds, alternating which goes first.
Every workload of every round gets fresh clusters, stopped and deleted after
the run. It prints every round, per workload the median Strata/etcd ratios
of throughput and p99 latency, and whether they meet the performance bar:

  put            bench put --key-size=8 --val-size=256 --key-space-size=10000
                 throughput >= 1.3x, p99 <= etcd
  txn-put        bench txn-put (same sizes)               throughput >= 1.3x
  range-l        bench range foo --consistency=l           throughput >= 1.3x
  range-s        bench range foo --consistency=s           throughput >= 1.2x
  watch-latency  bench watch-latency --put-total --put-rate --streams
                 --watchers-per-stream; the watch events' p99 <= etcd
  k8s            kvbench's own k8s mix (kvbench run --mode=endpoints
                 --workload=k8s) on --k8s-records objects, --k8s-clients
                 clients for --k8s-duration, the same client against both
                 servers; no --tls                         throughput >= 1.3x
  resources      bench put --sequential-keys of --resource-keys keys
                 (--resource-key-size bytes), then --resource-revisions
                 puts to random ones among them; then the members' RSS and
                 data directory size (du), the time from starting the
                 stopped members again to every /health answering 200, RSS
                 after it, and the size after etcdctl compact --physical at
                 the current revision and etcdctl defrag; each <= etcd

The benchmark tool runs with --conns=10 --clients=100 (--precise). The range
workloads first put "foo" (a --val-size value) with etcdctl. Failed requests, the tool's errors
and whatever the servers log at --log-level=error are printed with each run
and kept in --json.`,
		Example: `  kvbench versus --etcd=path/to/etcd --bench=path/to/benchmark --strata=./strata \
    --nodes=3 --workload=put,txn-put,range-l,range-s,watch-latency --rounds=5 --json=versus.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Options = opts
			cfg.Log = os.Stderr
			// Run checks the flags (Config.Validate) before it starts anything.
			res, err := versus.Run(cmd.Context(), cfg)
			if res != nil && len(res.Runs) > 0 {
				res.WriteTable(os.Stdout)
				if jsonOut != "" {
					if jerr := writeVersusJSON(jsonOut, res, cfg); jerr != nil {
						return errors.Join(err, jerr)
					}
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Etcd, "etcd", "", "etcd binary")
	fl.StringVar(&cfg.Strata, "strata", "", "strata binary (go build -o strata ./cmd/strata)")
	fl.StringVar(&cfg.Bench, "bench", "", "etcd's benchmark tool binary")
	fl.StringVar(&cfg.Etcdctl, "etcdctl", "", "etcdctl binary, to put the key the range workloads read (default: etcdctl next to --etcd)")
	fl.StringSliceVar(&cfg.StrataArgs, "strata-arg", nil, "extra flag for strata, e.g. --strata-arg=--backend=pebble (repeatable)")
	fl.StringSliceVar(&cfg.EtcdArgs, "etcd-arg", nil, "extra flag for etcd, e.g. --etcd-arg=--quota-backend-bytes=8589934592 (repeatable)")
	fl.BoolVar(&cfg.TLS, "tls", false, "run both servers with client and peer mTLS, and the benchmark tool with a client certificate")
	fl.IntVar(&cfg.Nodes, "nodes", 1, "members per cluster: 1 or 3 (loopback)")
	fl.StringSliceVar(&cfg.Workloads, "workload", []string{"put"}, "workloads, comma-separated: "+strings.Join(versus.WorkloadNames(), ","))
	fl.IntVar(&cfg.Rounds, "rounds", 5, "rounds; each runs every workload once against each server")
	fl.StringVar(&cfg.Dir, "dir", "", "directory for the servers' data (default: a temporary directory)")
	fl.StringVar(&jsonOut, "json", "", "write every run and the medians as JSON to this file")
	fl.DurationVar(&cfg.RunTimeout, "run-timeout", 10*time.Minute, "longest one benchmark run may take")
	fl.IntVar(&opts.Total, "total", opts.Total, "benchmark: total requests per run of put, txn-put and range")
	fl.IntVar(&opts.Conns, "conns", opts.Conns, "benchmark: gRPC connections")
	fl.IntVar(&opts.Clients, "clients", opts.Clients, "benchmark: concurrent clients")
	fl.IntVar(&opts.KeySize, "key-size", opts.KeySize, "benchmark: key size")
	fl.IntVar(&opts.ValSize, "val-size", opts.ValSize, "benchmark: value size")
	fl.IntVar(&opts.KeySpace, "key-space-size", opts.KeySpace, "benchmark: key space size of put and txn-put")
	fl.IntVar(&opts.WatchPutTotal, "watch-put-total", opts.WatchPutTotal, "watch-latency: --put-total")
	fl.IntVar(&opts.WatchPutRate, "watch-put-rate", opts.WatchPutRate, "watch-latency: --put-rate (puts a second)")
	fl.IntVar(&opts.WatchStreams, "watch-streams", opts.WatchStreams, "watch-latency: --streams")
	fl.IntVar(&opts.ResourceKeys, "resource-keys", opts.ResourceKeys, "resources: keys loaded")
	fl.IntVar(&opts.ResourceKeySize, "resource-key-size", opts.ResourceKeySize, "resources: key size")
	fl.IntVar(&opts.ResourceRevisions, "resource-revisions", opts.ResourceRevisions, "resources: puts made to the loaded keys after loading them")
	fl.IntVar(&opts.WatchersPerStream, "watchers-per-stream", opts.WatchersPerStream, "watch-latency: --watchers-per-stream")
	fl.IntVar(&opts.K8sRecords, "k8s-records", opts.K8sRecords, "k8s: objects loaded before the run (kvbench run --records)")
	fl.IntVar(&opts.K8sClients, "k8s-clients", opts.K8sClients, "k8s: concurrent clients (kvbench run --clients)")
	fl.DurationVar(&opts.K8sDuration, "k8s-duration", opts.K8sDuration, "k8s: length of the run (kvbench run --duration)")
	return cmd
}

func writeVersusJSON(path string, res *versus.Result, cfg versus.Config) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := res.WriteJSON(fh, cfg, os.Args); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}
