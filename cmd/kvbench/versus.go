package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/strata-kv/strata/bench"
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
		cfg                        bench.VersusConfig
		total, conns, clients      int
		keySize, valSize, keySpace int
	)
	cmd := &cobra.Command{
		Use:   "versus --etcd PATH --strata PATH --bench PATH",
		Short: "Strata against etcd on etcd's own benchmark tool, in alternating rounds",
		Long: `versus starts a fresh single-member etcd and a fresh single-member Strata on
free loopback ports, one at a time, and runs etcd's benchmark tool
(tools/benchmark) "put" against each, for --rounds rounds, alternating which
goes first. It prints every round and the median Strata/etcd ratios of
throughput and p99 latency.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for name, p := range map[string]string{"--etcd": cfg.Etcd, "--strata": cfg.Strata, "--bench": cfg.Bench} {
				if p == "" {
					return fmt.Errorf("%s is required", name)
				}
			}
			cfg.BenchArgs = []string{
				"--conns=" + strconv.Itoa(conns), "--clients=" + strconv.Itoa(clients),
				"put", "--key-size=" + strconv.Itoa(keySize), "--val-size=" + strconv.Itoa(valSize),
				"--key-space-size=" + strconv.Itoa(keySpace), "--total=" + strconv.Itoa(total),
			}
			cfg.Log = os.Stderr
			res, err := bench.RunVersus(cmd.Context(), cfg)
			if res != nil && len(res.Runs) > 0 {
				res.WriteTable(os.Stdout)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.Etcd, "etcd", "", "etcd binary")
	fl.StringVar(&cfg.Strata, "strata", "", "strata binary (go build -o /tmp/strata ./cmd/strata)")
	fl.StringVar(&cfg.Bench, "bench", "", "etcd's benchmark tool binary")
	fl.StringSliceVar(&cfg.StrataArgs, "strata-arg", nil, "extra flag for strata, e.g. --strata-arg=--backend=pebble (repeatable)")
	fl.IntVar(&cfg.Rounds, "rounds", 5, "rounds; each runs the benchmark once against each server")
	fl.StringVar(&cfg.Dir, "dir", "", "directory for the servers' data (default: a temporary directory)")
	fl.IntVar(&total, "total", 100000, "benchmark: total requests per run")
	fl.IntVar(&conns, "conns", 10, "benchmark: gRPC connections")
	fl.IntVar(&clients, "clients", 100, "benchmark: concurrent clients")
	fl.IntVar(&keySize, "key-size", 8, "benchmark: key size")
	fl.IntVar(&valSize, "val-size", 256, "benchmark: value size")
	fl.IntVar(&keySpace, "key-space-size", 10000, "benchmark: key space size")
	return cmd
}
