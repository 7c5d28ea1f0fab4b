// Command kvbench compares Strata's storage engines (and, as modes arrive,
// the MVCC store, Strata clusters and any etcd endpoint) under the same
// workloads. The workloads and drivers live in package bench; this command
// only binds flags and prints.
//
//	kvbench run --mode=engine --backend=bbolt,pebble,badger --workload=ycsb-a,ycsb-c
//	kvbench run --mode=cluster --workload=k8s,watch-latency,defrag
//	kvbench compare before.json after.json
//	kvbench workloads
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/bench"
	"github.com/strata-kv/strata/cmd/kvbench/internal/render"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kvbench:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "kvbench",
		Short:         "Benchmark Strata's engines, store and clusters, and etcd",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), newCompareCmd(), newWorkloadsCmd(), newReportCmd(), newVersusCmd())
	return root
}

type runFlags struct {
	mode       string
	backends   []string
	workloads  []string
	records    uint64
	valueSize  int
	clients    int
	duration   time.Duration
	ops        uint64
	rate       float64
	warmup     time.Duration
	durability string
	seed       uint64
	dir        string
	jsonOut    string
	baseline   string

	htmlOut string
	pngDir  string
	pid     int

	nodes        int
	endpoints    []string
	label        string
	serializable bool
	dataDir      string

	watchers        int
	watchStreams    int
	watchProgress   time.Duration
	compactInterval time.Duration
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Load a keyspace and run workloads against each target",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", "engine", "what to drive: engine (a storage engine in process), mvcc (the MVCC store in process), cluster (a Strata cluster per backend, over gRPC), endpoints (any etcd v3 endpoints, e.g. a real etcd)")
	fl.IntVar(&f.nodes, "nodes", 1, "cluster mode: members per cluster")
	fl.StringSliceVar(&f.endpoints, "endpoints", nil, "endpoints mode: client addresses host:port")
	fl.StringVar(&f.label, "label", "endpoints", "endpoints mode: the target's name in the report")
	fl.BoolVar(&f.serializable, "serializable", false, "cluster and endpoints modes: serializable reads instead of linearizable")
	fl.StringSliceVar(&f.backends, "backend", []string{"bbolt", "pebble", "badger"}, "engines to compare; the first is the default baseline")
	fl.StringSliceVar(&f.workloads, "workload", []string{"ycsb-a", "ycsb-b", "ycsb-c"}, "workloads to run in order (see `kvbench workloads`)")
	fl.Uint64Var(&f.records, "records", 100000, "records loaded before the runs")
	fl.IntVar(&f.valueSize, "value-size", 256, "value size in bytes")
	fl.IntVar(&f.clients, "clients", 16, "concurrent clients")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "length of each run (0: use --ops)")
	fl.Uint64Var(&f.ops, "ops", 0, "operations per run (0: use --duration)")
	fl.Float64Var(&f.rate, "rate", 0, "total operations per second (0: unlimited, or the workload's own: 500 puts/s for watch-fanout, 100 for watch-latency)")
	fl.DurationVar(&f.warmup, "warmup", 0, "unmeasured warmup before each run")
	fl.StringVar(&f.durability, "durability", "nosync", "nosync: commits are not fsynced; sync: every commit is (never mixed in one table)")
	fl.Uint64Var(&f.seed, "seed", 1, "random seed")
	fl.StringVar(&f.dir, "dir", "", "directory for data (default: a temporary directory, removed after)")
	fl.StringVar(&f.jsonOut, "json", "", "also write the report as JSON to this file")
	fl.StringVar(&f.baseline, "baseline", "", "target the ratios are computed against (default: the first)")
	fl.StringVar(&f.htmlOut, "html", "", "also write the report as a self-contained HTML page (tables and charts) to this file")
	fl.StringVar(&f.pngDir, "png", "", "also write the report's charts as PNG files into this directory")
	fl.IntVar(&f.pid, "pid", 0, "endpoints mode: pid of the local server process, to record its peak RSS")
	fl.StringVar(&f.dataDir, "data-dir", "", "endpoints mode: data directory of the local server, to record its size (du)")
	fl.IntVar(&f.watchers, "watchers", 100, "watch-fanout and watch-latency: watchers")
	fl.IntVar(&f.watchStreams, "watch-streams", 10, "watch-fanout and watch-latency: gRPC streams the watchers are spread over")
	fl.DurationVar(&f.watchProgress, "watch-progress-notify", 0, "watch-fanout and watch-latency: the targets' progress notification interval "+
		"(the in-process stores and clusters get it; start etcd and endpoints with --watch-progress-notify-interval); "+
		"watchers ask for progress notifications and the report has the times between them after the run (0: none)")
	fl.DurationVar(&f.compactInterval, "compact-interval", 0, "k8s: the apiserver's compaction interval (0: 5s; negative: none); "+
		"compact and defrag: compact (and defrag) every interval (0: once, halfway through the run)")
	return cmd
}

func run(ctx context.Context, f *runFlags) error {
	switch f.mode {
	case "engine", "mvcc", "cluster", "endpoints":
	default:
		return fmt.Errorf("unknown mode %q (have: engine, mvcc, cluster, endpoints)", f.mode)
	}
	if f.mode == "endpoints" && len(f.endpoints) == 0 {
		return fmt.Errorf("--mode=endpoints needs --endpoints")
	}
	if f.durability != "sync" && f.durability != "nosync" {
		return fmt.Errorf("--durability must be sync or nosync, not %q", f.durability)
	}
	var workloads []bench.Workload
	for _, name := range f.workloads {
		w, err := bench.Preset(name)
		if err != nil {
			return err
		}
		if w.NeedsEtcd() && f.mode == "engine" {
			return fmt.Errorf("workload %s needs etcd's requests: use --mode=mvcc, cluster or endpoints", name)
		}
		workloads = append(workloads, w)
	}
	reg := backends.Registry()
	for _, b := range f.backends {
		if _, err := reg.Lookup(b); err != nil {
			return err
		}
	}
	dir := f.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "kvbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	report := bench.NewReport(os.Args)
	report.Baseline = f.baseline
	// The engine, mvcc and cluster modes run in kvbench's process (rssPid 0).
	r := &runner{prog: newProgress()}
	if f.mode == "endpoints" {
		r.rssPid = f.pid
		if r.rssPid == 0 {
			r.rssPid = -1
		}
	}
	cfg := bench.Config{
		Records:  f.records,
		Keyspace: bench.Keyspace{ValueSize: f.valueSize},
		Clients:  f.clients,
		Duration: f.duration,
		Ops:      f.ops,
		Warmup:   f.warmup,
		Rate:     f.rate,
		Seed:     f.seed,

		Watchers:            f.watchers,
		WatchStreams:        f.watchStreams,
		WatchProgressNotify: f.watchProgress,
		RSSPid:              r.rssPid,
		CompactInterval:     f.compactInterval,
	}
	targets := f.backends
	if f.mode == "endpoints" {
		targets = []string{f.label}
	}
	for _, name := range targets {
		var runs []bench.RunReport
		var err error
		if f.mode == "engine" || f.mode == "mvcc" {
			runs, err = r.runEngine(ctx, reg, f.mode, name, dir, workloads, cfg, f.durability)
		} else {
			runs, err = r.runRemote(ctx, reg, f, name, dir, workloads, cfg)
		}
		if err != nil {
			r.prog.wait()
			return fmt.Errorf("%s: %w", name, err)
		}
		report.Runs = append(report.Runs, runs...)
	}
	r.prog.wait()
	report.WriteTables(os.Stdout, f.baseline)
	if f.jsonOut != "" {
		if err := writeFile(f.jsonOut, report.WriteJSON); err != nil {
			return err
		}
	}
	return writeRendered(report, f.htmlOut, f.pngDir)
}

// runner is what one run command's targets share.
type runner struct {
	// prog draws the progress bars.
	prog *progress
	// rssPid is the process whose peak RSS is recorded per run: 0 for
	// kvbench itself, -1 for none.
	rssPid int
}

// measure runs workload w with a progress bar, sampling the peak RSS of
// process rssPid meanwhile.
func (r *runner) measure(ctx context.Context, store bench.Store, w bench.Workload, cfg bench.Config, name string) (*bench.Result, bench.Mem, error) {
	if r.prog.p == nil {
		fmt.Fprintf(os.Stderr, "%s: running %s\n", name, w.Name)
	}
	cfg, done := r.prog.bar(cfg, name+" "+w.Name)
	var rss *bench.RSSSampler
	if r.rssPid >= 0 {
		if r.rssPid == 0 {
			// Hand back what earlier targets left, so their memory is not
			// counted against this one.
			debug.FreeOSMemory()
		}
		rss = bench.StartRSS(r.rssPid, 0)
	}
	res, err := bench.Run(ctx, store, w, cfg)
	var peak bench.Mem
	if rss != nil {
		peak = rss.Stop()
	}
	done(res)
	return res, peak, err
}

func writeFile(path string, write func(io.Writer) error) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeRendered(report *bench.Report, htmlOut, pngDir string) error {
	if htmlOut != "" {
		if err := writeFile(htmlOut, func(w io.Writer) error { return render.WriteHTML(w, report) }); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "wrote", htmlOut)
	}
	if pngDir != "" {
		paths, err := render.WritePNG(report, pngDir)
		if err != nil {
			return err
		}
		for _, p := range paths {
			fmt.Fprintln(os.Stderr, "wrote", p)
		}
	}
	return nil
}

// finish fills in what a run report says besides the result: the
// target's space after the run, and after its last defrag.
func finish(ctx context.Context, rr *bench.RunReport, store bench.Store, dir string) {
	rr.Disk = bench.MeasureDisk(ctx, store, dir)
	for _, p := range rr.Result.Pauses {
		if p.Kind == "defrag" && p.Error == "" {
			rr.Disk.AfterDefrag = p.After.DU
		}
	}
}

func (r *runner) runEngine(ctx context.Context, reg *engine.Registry, mode, name, root string, workloads []bench.Workload,
	cfg bench.Config, durability string) ([]bench.RunReport, error) {
	var (
		runs   []bench.RunReport
		db     engine.Backend
		st     *mvcc.Store
		store  bench.Store
		loaded string // the LoadKey of what db holds
		took   time.Duration
	)
	dir := root + "/" + name
	cfg.DataDir = dir
	closeDB := func() {
		if st != nil {
			st.Close()
			st = nil
		}
		if db != nil {
			db.Close()
			db = nil
		}
	}
	defer closeDB()
	for _, w := range workloads {
		// Workloads share a load while they agree on what it is; another
		// load needs a fresh keyspace. Workloads that need none run on
		// what is there.
		if key := w.LoadKey(); db == nil || (key != "" && key != loaded) {
			closeDB()
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
			var err error
			if db, err = reg.Open(name, dir, engine.Options{}); err != nil {
				return nil, err
			}
			store = &bench.EngineStore{Backend: db, Sync: durability == "sync"}
			if mode == "mvcc" {
				wo := engine.NoSync
				if durability == "sync" {
					wo = engine.Sync
				}
				if st, err = mvcc.Open(db, &mvcc.Options{WriteOptions: wo}); err != nil {
					return nil, err
				}
				store = &bench.MVCCStore{Store: st, Backend: db, ProgressNotifyInterval: cfg.WatchProgressNotify}
			}
			loaded = key
			if key != "" {
				fmt.Fprintf(r.prog.log(), "%s: loading %d records (%s)\n", name, cfg.Records, key)
				if took, err = bench.LoadWorkload(ctx, store, w, cfg); err != nil {
					return nil, err
				}
				if err := db.Sync(); err != nil {
					return nil, err
				}
			}
		}
		res, peak, err := r.measure(ctx, store, w, cfg, name)
		if err != nil {
			return nil, err
		}
		rr := bench.RunReport{
			Mode: mode, Target: name, Workload: w.Name, Durability: durability,
			Records: cfg.Records, ValueSize: cfg.Keyspace.ValueSize, Clients: cfg.Clients, Result: res,
			LoadSecs: took.Seconds(), PeakRSS: peak.RSS, PeakAnon: peak.Anon,
		}
		took = 0
		finish(ctx, &rr, store, dir)
		runs = append(runs, rr)
	}
	return runs, nil
}

// runRemote runs the workloads over gRPC: against a fresh in-process
// Strata cluster of backend name (cluster mode), or against the given
// endpoints. Workloads that disagree on their load each get a fresh one
// (a fresh cluster; for endpoints, keys are simply written again).
func (r *runner) runRemote(ctx context.Context, reg *engine.Registry, f *runFlags, name, root string,
	workloads []bench.Workload, cfg bench.Config) ([]bench.RunReport, error) {
	var (
		runs    []bench.RunReport
		cluster *bench.Cluster
		store   *bench.ClientStore
		loaded  string // the LoadKey of what the target holds
		took    time.Duration
		round   int
	)
	closeAll := func() {
		if store != nil {
			store.Close()
			store = nil
		}
		if cluster != nil {
			cluster.Close()
			cluster = nil
		}
	}
	defer closeAll()
	durability := "raft-fsync"
	for _, w := range workloads {
		if key := w.LoadKey(); store == nil || (key != "" && key != loaded) {
			closeAll()
			eps := f.endpoints
			cfg.DataDir = f.dataDir
			if f.mode == "cluster" {
				e, err := reg.Lookup(name)
				if err != nil {
					return nil, err
				}
				round++
				dir := fmt.Sprintf("%s/%s-%d", root, name, round)
				fmt.Fprintf(r.prog.log(), "%s: starting a %d-member cluster\n", name, f.nodes)
				if cluster, err = bench.StartCluster(dir, f.nodes, e, func(c *server.Config) {
					c.WatchProgressNotifyInterval = f.watchProgress
				}); err != nil {
					return nil, err
				}
				eps = cluster.Endpoints()
				cfg.DataDir = cluster.Dir()
			}
			var err error
			if store, err = bench.NewClientStore(eps); err != nil {
				return nil, err
			}
			store.Serializable = f.serializable
			loaded = key
			if key != "" {
				fmt.Fprintf(r.prog.log(), "%s: loading %d records (%s)\n", name, cfg.Records, key)
				if took, err = bench.LoadWorkload(ctx, store, w, cfg); err != nil {
					return nil, err
				}
			}
		}
		res, peak, err := r.measure(ctx, store, w, cfg, name)
		if err != nil {
			return nil, err
		}
		rr := bench.RunReport{
			Mode: f.mode, Target: name, Workload: w.Name, Durability: durability,
			Records: cfg.Records, ValueSize: cfg.Keyspace.ValueSize, Clients: cfg.Clients, Result: res,
			LoadSecs: took.Seconds(), PeakRSS: peak.RSS, PeakAnon: peak.Anon,
		}
		took = 0
		finish(ctx, &rr, store, cfg.DataDir)
		runs = append(runs, rr)
	}
	return runs, nil
}

func newCompareCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compare a.json b.json",
		Short: "Show b's results as ratios of a's, for runs present in both",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			var reps [2]*bench.Report
			for i, p := range args {
				fh, err := os.Open(p)
				if err != nil {
					return err
				}
				reps[i], err = bench.ReadReport(fh)
				fh.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
			}
			bench.Compare(os.Stdout, reps[0], reps[1])
			return nil
		},
	}
}

func newWorkloadsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "workloads",
		Short: "List the built-in workloads",
		RunE: func(*cobra.Command, []string) error {
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			for _, w := range bench.Presets() {
				fmt.Fprintf(tw, "%s\t%s\n", w.Name, w.Description)
			}
			return tw.Flush()
		},
	}
}
