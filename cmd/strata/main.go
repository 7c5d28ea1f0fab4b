// Command strata runs one Strata member: an etcd v3 compatible server.
// It takes etcd's flags, so that
//
//	strata
//
// starts a single member "default" serving clients on 127.0.0.1:2379
// (gRPC and HTTP), with its peer port on 127.0.0.1:2380 and its data in
// ./default.strata, and a three-member cluster starts as etcd's does:
//
//	strata --name s1 --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
//	  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
//	  --initial-cluster s1=http://127.0.0.1:2380,s2=http://127.0.0.1:2381,s3=http://127.0.0.1:2382
//
// --backend picks the storage engine (bbolt, pebble or badger). It logs
// "ready to serve client requests" once it serves, and stops gracefully on
// SIGINT or SIGTERM.
//
// Offline subcommands work on a stopped member's data directory:
//
//	strata snapshot restore FILE --data-dir DIR [--name NAME] [--backend ENGINE] [--skip-hash-check]
//	  [--initial-cluster NAME=URL,... --initial-cluster-token TOKEN --initial-advertise-peer-urls URLS]
//	strata snapshot export OUT.db (--data-dir DIR | --snapshot FILE --backend ENGINE)
//	strata defrag --data-dir DIR [--backend ENGINE]
//	strata migrate --data-dir DIR --to ENGINE [--from ENGINE]
//
// restore makes, from a snapshot saved with `etcdctl snapshot save` from a
// Strata or an etcd member, or from a stopped etcd member's
// member/snap/db, the data directory of a new single-member cluster (as
// `etcdutl snapshot restore`), or with --initial-cluster and its
// companions one member of a new cluster; export writes an etcd snapshot
// file that `etcdutl snapshot restore` takes; defrag defragments the
// member's engine; migrate moves the member's store to another engine.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		os.Exit(1)
	}
}

// urlsFlag is a comma-separated list of URLs.
type urlsFlag []string

func (u *urlsFlag) String() string { return strings.Join(*u, ",") }

func (u *urlsFlag) Set(s string) error {
	*u = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*u = append(*u, p)
		}
	}
	return nil
}

func run(args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "snapshot":
			return runSnapshot(args[1:])
		case "defrag":
			return runDefrag(args[1:])
		case "migrate":
			return runMigrate(args[1:])
		}
	}
	reg := backends.Registry()
	fs := flag.NewFlagSet("strata", flag.ContinueOnError)
	var (
		cfg                 server.Config
		backend             string
		logLevel            string
		heartbeatMs, elecMs uint
		maxRequestBytes     uint
		maxTxnOps           uint
		version             bool
	)
	listenClient := urlsFlag{server.DefaultListenClientURL}
	listenPeer := urlsFlag{server.DefaultListenPeerURL}
	var advertiseClient, advertisePeer, listenMetrics urlsFlag
	fs.StringVar(&cfg.Name, "name", server.DefaultName, "Human-readable name for this member.")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "Path to the data directory (default \"${name}.strata\").")
	fs.Var(&listenClient, "listen-client-urls", "List of URLs to listen on for client traffic (gRPC and HTTP).")
	fs.Var(&advertiseClient, "advertise-client-urls", "List of this member's client URLs to advertise to clients (default: the listen URLs).")
	fs.Var(&listenMetrics, "listen-metrics-urls", "List of additional URLs to listen on for the HTTP endpoints (/metrics, /health ...).")
	fs.Var(&listenPeer, "listen-peer-urls", "URL to listen on for peer traffic (one).")
	fs.Var(&advertisePeer, "initial-advertise-peer-urls", "This member's peer URLs to advertise to the rest of the cluster (default: the listen peer URL).")
	fs.StringVar(&cfg.InitialCluster, "initial-cluster", "", "Initial cluster configuration for bootstrapping, name=peerURL,... (default \"${name}=${initial-advertise-peer-urls}\").")
	fs.StringVar(&cfg.InitialClusterState, "initial-cluster-state", server.ClusterStateNew, "Initial cluster state ('new' or 'existing').")
	fs.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", server.DefaultInitialClusterToken, "Initial cluster token, seeds the member and cluster IDs.")
	fs.Uint64Var(&cfg.SnapshotCount, "snapshot-count", server.DefaultSnapshotCount, "Number of committed transactions to trigger a snapshot to disk.")
	fs.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", server.DefaultQuotaBackendBytes, "Raise alarms when backend size exceeds the given quota (negative: no quota).")
	fs.StringVar(&cfg.AutoCompactionMode, "auto-compaction-mode", server.CompactionPeriodic, "Interpret 'auto-compaction-retention' one of: periodic|revision.")
	fs.StringVar(&cfg.AutoCompactionRetention, "auto-compaction-retention", "0", "Auto compaction retention for mvcc key value store. 0 means disable auto compaction.")
	fs.UintVar(&maxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "Maximum client request size in bytes the server will accept.")
	fs.UintVar(&maxTxnOps, "max-txn-ops", 128, "Maximum number of operations permitted in a transaction.")
	fs.UintVar(&heartbeatMs, "heartbeat-interval", 100, "Time (in milliseconds) of a heartbeat interval.")
	fs.UintVar(&elecMs, "election-timeout", 1000, "Time (in milliseconds) for an election to timeout.")
	fs.DurationVar(&cfg.WatchProgressNotifyInterval, "watch-progress-notify-interval", 10*time.Minute, "Duration of periodic watch progress notifications.")
	fs.StringVar(&backend, "backend", backends.Default, "Storage engine: "+strings.Join(reg.Names(), "|")+".")
	fs.StringVar(&logLevel, "log-level", "info", "Log level: debug, info, warn or error.")
	fs.BoolVar(&cfg.EnablePprof, "enable-pprof", false, "Enable runtime profiling data via HTTP server. Address is at client URL + \"/debug/pprof/\"")
	fs.BoolVar(&version, "version", false, "Print the version and exit.")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if version {
		fmt.Printf("strata (etcd API %s)\n", server.ServerVersion)
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	eng, err := reg.Lookup(backend)
	if err != nil {
		return fmt.Errorf("--backend: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Engine = eng
	cfg.EngineOptions.Logger = logger.With("component", "engine")
	cfg.ListenClientURLs = listenClient
	cfg.AdvertiseClientURLs = advertiseClient
	cfg.ListenMetricsURLs = listenMetrics
	cfg.ListenPeerURLs = listenPeer
	cfg.InitialAdvertisePeerURLs = advertisePeer
	cfg.MaxRequestBytes = maxRequestBytes
	cfg.MaxTxnOps = maxTxnOps
	cfg.HeartbeatInterval = time.Duration(heartbeatMs) * time.Millisecond
	cfg.ElectionTimeout = time.Duration(elecMs) * time.Millisecond
	cfg.Logger = logger

	s, err := server.Start(cfg)
	if err != nil {
		return err
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	select {
	case sig := <-sigc:
		logger.Info("received signal; shutting down", "signal", sig.String())
		return s.Close()
	case <-s.StopNotify():
		// Removed from the cluster (etcd exits 0 then too), or stopped on
		// an error such as a failed initial corruption check.
		return s.Err()
	}
}
