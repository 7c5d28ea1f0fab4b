// Command strata runs one Strata member: an etcd v3 compatible server.
// It takes etcd v3.7.3's command line, so that
//
//	strata
//
// starts a single member "default" serving clients on localhost:2379
// (gRPC and HTTP), with its peer port on localhost:2380 and its data in
// ./default.strata, and a three-member cluster starts as etcd's does:
//
//	strata --name s1 --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
//	  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
//	  --initial-cluster s1=http://127.0.0.1:2380,s2=http://127.0.0.1:2381,s3=http://127.0.0.1:2382
//
// # Flags, environment, config file
//
// Every flag etcd v3.7.3's server accepts is in one table (flags.go),
// with etcd's name, type, default and help group. Each row either honours
// its flag (copies it into server.Config or the settings cmd/strata uses
// itself) or refuses it: a refused flag is accepted at its default value,
// and any other value stops start-up with one line, "--FLAG is not
// supported: ALTERNATIVE". Flags are parsed with pflag, following Go's
// flag package where etcd's behaviour comes from it: -name and --name both
// work, a flag given twice keeps its last value, flags stop at the first
// argument that is not one (an error, as etcd's), and a bad command line
// exits 2 with the usage.
//
// Without --config-file, the flags not on the command line are read from
// ETCD_<FLAG> environment variables (ETCD_DATA_DIR for --data-dir), as
// etcd's flags.SetFlagsFromEnv: an empty variable is unused, a variable of
// a flag also given on the command line stops start-up, ETCD_VERSION is
// never used. --backend, Strata's own flag, is STRATA_BACKEND.
//
// With --config-file (or ETCD_CONFIG_FILE), the YAML file alone
// configures the member, as etcd's: its keys are etcd's (embed.Config's
// JSON names), unknown keys are ignored with a warning, and the file may
// hold Strata's `backend`.
//
// --backend picks the storage engine (bbolt, pebble or badger). The log is
// JSON lines with etcd's keys (--log-format=console for text). It logs
// "ready to serve client requests" once it serves, and stops gracefully
// on SIGINT or SIGTERM. --version prints etcd's four lines (with the etcd
// version whose API Strata serves) and a Strata line.
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
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/internal/gcpace"
	"github.com/strata-kv/strata/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		if errors.Is(err, errUsage) {
			// As etcd: a bad command line prints the usage, exit code 2.
			fmt.Fprint(os.Stderr, usageLine)
			os.Exit(2)
		}
		os.Exit(1)
	}
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
	p, err := parseMember(args, os.Environ())
	if err != nil {
		return err
	}
	switch {
	case p.help:
		writeHelp(os.Stdout)
		return nil
	case p.version:
		writeVersion(os.Stdout)
		return nil
	}
	if o := gcPacing(p.settings.backend, os.Getenv); o != nil {
		pacer, err := gcpace.Start(o)
		if err != nil {
			return err
		}
		defer pacer.Close()
	}
	s, err := launch(p, nil)
	if err != nil {
		return err
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	select {
	case sig := <-sigc:
		s.logger.Info("received signal; shutting down", "signal", sig.String())
		return s.Close()
	case <-s.StopNotify():
		// Removed from the cluster (etcd exits 0 then too), or stopped on
		// an error such as a failed initial corruption check.
		s.closeLog()
		return s.Err()
	}
}

// member is a started member and its logger.
type member struct {
	*server.Server
	logger   interface{ Info(string, ...any) }
	closeLog func()
}

func (m *member) Close() error {
	err := m.Server.Close()
	m.closeLog()
	return err
}

// launch starts the member p configures. logOut, if not nil,
// replaces the log outputs (tests).
func launch(p *parsed, logOut io.Writer) (*member, error) {
	st := p.settings
	logger, closeLog, err := newLogger(st.log, logOut)
	if err != nil {
		return nil, err
	}
	logWarnings(logger, p.warnings)
	eng, err := backends.Registry().Lookup(st.backend)
	if err != nil {
		closeLog()
		return nil, fmt.Errorf("--backend: %w", err)
	}
	cfg := st.server
	cfg.Engine = eng
	cfg.EngineOptions.Logger = logger.With("component", "engine")
	cfg.Logger = logger
	injectFaults(&cfg, os.Getenv, logger)
	s, err := server.Start(cfg)
	if err != nil {
		closeLog()
		return nil, err
	}
	return &member{Server: s, logger: logger, closeLog: closeLog}, nil
}

// urlsFlag is a comma-separated list of URLs, for the offline subcommands'
// Go flag sets.
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

// gcPacing returns how to pace the garbage collector of a member on
// backend, or nil to leave Go's pacing (GOGC) alone. An engine that keeps
// buffers on the Go heap for as long as it is open (badger's memtable
// arena, about 42 MiB) would let as much garbage again pile up before each
// collection: at GOGC=100 a member under light load took 86 MiB of RSS
// where etcd took 37. Unless the operator set GOGC, the collector is paced
// as if they were not there, and never lets the heap grow by more than
// pinnedMaxGCPercent of all of it.
func gcPacing(backend string, getenv func(string) string) *gcpace.Options {
	if getenv("GOGC") != "" {
		return nil
	}
	eng, err := backends.Registry().Lookup(backend)
	if err != nil || eng.PinnedHeap == 0 {
		return nil
	}
	return &gcpace.Options{Pinned: eng.PinnedHeap, Max: pinnedMaxGCPercent}
}

// pinnedMaxGCPercent caps the percentage on an engine with pinned heap.
// badger holds more than its arena on the Go heap for seconds at a time:
// memtables queued for flushing (42 MiB each) and the buffers of the
// tables it builds (124 MiB for one flush in a heap profile). Paced at 100
// without the arena, a member loaded with 1M keys peaked at 1.3 GiB of
// RSS, at GOGC=50 at 982 MiB (etcd 609-614 MiB); paced at 50, at 920 MiB,
// but its puts took 15-40% more CPU.
const pinnedMaxGCPercent = 50
