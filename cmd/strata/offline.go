package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/server"
)

// Offline subcommands work on a stopped member's data directory, as
// etcdutl's do:
//
//	strata snapshot restore FILE [--name NAME] [--data-dir DIR] [--backend ENGINE] [--skip-hash-check]
//	  [--initial-cluster NAME=URL,... --initial-cluster-token TOKEN --initial-advertise-peer-urls URLS]
//	strata snapshot export OUT.db (--data-dir DIR | --snapshot FILE --backend ENGINE)
//	strata defrag --data-dir DIR [--backend ENGINE]
//
// A member's data directory holds strata-member.json (its identity) and
// member/ with data/ (the engine) and raft/ (log and snapshots).

// memberDataDir is where a member keeps its engine's data.
func memberDataDir(dataDir string) string { return server.StoreDir(dataDir) }

// parseInterspersed parses args with fs, allowing flags after positional
// arguments (`snapshot restore FILE --data-dir DIR`), and returns the
// positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// runSnapshot runs `strata snapshot SUBCOMMAND`.
func runSnapshot(args []string) error {
	const usage = "usage: strata snapshot restore FILE [--name NAME] [--data-dir DIR] [--backend ENGINE] [--skip-hash-check]\n" +
		"         [--initial-cluster NAME=URL,... --initial-cluster-token TOKEN --initial-advertise-peer-urls URLS]\n" +
		"       strata snapshot export OUT.db (--data-dir DIR | --snapshot FILE --backend ENGINE)"
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "restore":
		return runSnapshotRestore(args[1:])
	case "export":
		return runSnapshotExport(args[1:])
	}
	return errors.New(usage)
}

// runSnapshotRestore restores a snapshot into a new data directory, from
// which `strata --name NAME --data-dir DIR` starts a new single-member
// cluster holding the snapshot's keys, revisions and leases. The file is
// either a Strata snapshot (`etcdctl snapshot save` from a Strata member)
// or etcd's: a snapshot saved from an etcd member, or a stopped etcd
// member's `member/snap/db` (with --skip-hash-check, as etcdutl). The raft
// log starts afresh: the store's applied index is reset, as etcdutl
// resets etcd's consistent index. With --initial-cluster (or the token or
// the advertised peer URLs) it makes, as etcdutl, a member of a new
// cluster (server.InitMember); without them, the member's identity is made
// at its first start from its flags. The data directory is built under a
// temporary name next to it and renamed at the end, so a failed restore
// leaves nothing behind.
func runSnapshotRestore(args []string) error {
	reg := backends.Registry()
	fs := flag.NewFlagSet("strata snapshot restore", flag.ContinueOnError)
	name := fs.String("name", server.DefaultName, "Human-readable name for the member the data is restored for.")
	dataDir := fs.String("data-dir", "", "Path to the data directory to create (default \"${name}.strata\"); it must not exist.")
	backend := fs.String("backend", backends.Default, "Storage engine: of the member a Strata snapshot was saved from, or to restore an etcd snapshot into: "+strings.Join(reg.Names(), "|")+".")
	skipHash := fs.Bool("skip-hash-check", false, "Accept an etcd database without an appended sha256 (a member's member/snap/db), and do not check one that has it.")
	initialCluster := fs.String("initial-cluster", "", "Initial cluster configuration for the restore bootstrap, name=peerURL,... (default: a single member, made at its first start from its flags).")
	token := fs.String("initial-cluster-token", server.DefaultInitialClusterToken, "Initial cluster token for the cluster during restore bootstrap.")
	var advertisePeer urlsFlag
	fs.Var(&advertisePeer, "initial-advertise-peer-urls", "List of this member's peer URLs to advertise to the rest of the cluster (default: its URLs in --initial-cluster).")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("snapshot restore: one snapshot file is required")
	}
	if *dataDir == "" {
		*dataDir = *name + ".strata"
	}
	if !reg.Has(*backend) {
		return fmt.Errorf("--backend: unknown engine %q (%s)", *backend, strings.Join(reg.Names(), "|"))
	}
	// With the cluster flags, the member of a new cluster is made here, as
	// etcdutl makes it; without them, at its first start from its flags.
	var member *server.Config
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["initial-cluster"] || set["initial-cluster-token"] || set["initial-advertise-peer-urls"] {
		eng, _ := reg.Lookup(*backend)
		member = &server.Config{Name: *name, Engine: eng, InitialCluster: *initialCluster,
			InitialClusterToken: *token, InitialAdvertisePeerURLs: advertisePeer}
		if len(advertisePeer) == 0 && *initialCluster != "" {
			member.InitialAdvertisePeerURLs = urlsOf(*initialCluster, *name)
		}
		// Checked before anything is written.
		check := *member
		check.DataDir = *dataDir
		check.EnsureDefaults()
		if err := check.Validate(); err != nil {
			return fmt.Errorf("snapshot restore: %w", err)
		}
	}
	if _, err := os.Stat(*dataDir); err == nil {
		return fmt.Errorf("snapshot restore: data-dir %q exists", *dataDir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("snapshot restore: %s is a directory; for an etcd member's data, give %s with --skip-hash-check",
			pos[0], filepath.Join(pos[0], "member", "snap", "db"))
	}
	began := time.Now()
	rd, err := server.ReadSnapshot(f, fi.Size())
	isStrata := err == nil
	if err != nil && !errors.Is(err, server.ErrNotSnapshot) {
		return fmt.Errorf("snapshot restore: %s: %w", pos[0], err)
	}

	parent := filepath.Dir(filepath.Clean(*dataDir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(*dataDir)+".restoring-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Mkdir(filepath.Join(tmp, "member"), 0o700); err != nil {
		return err
	}
	dir := memberDataDir(tmp)
	what := "Strata snapshot"
	if isStrata {
		err = restoreStrata(reg, *backend, dir, rd)
	} else {
		var sum etcdRestoreSummary
		sum, err = restoreEtcd(reg, *backend, dir, pos[0], *skipHash)
		what = sum.String()
	}
	if err != nil {
		return fmt.Errorf("snapshot restore: %s: %w", pos[0], err)
	}
	start := fmt.Sprintf("strata --name %s --data-dir %s --backend %s", *name, *dataDir, *backend)
	if member != nil {
		member.DataDir = tmp
		if err := server.InitMember(*member); err != nil {
			return fmt.Errorf("snapshot restore: %w", err)
		}
		start += " --listen-peer-urls URL --listen-client-urls URLS ..."
	}
	if err := engine.SyncDir(filepath.Join(tmp, "member")); err != nil {
		return err
	}
	if err := os.Rename(tmp, *dataDir); err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	ok = true
	if err := engine.SyncDir(parent); err != nil {
		return err
	}
	fmt.Printf("restored %s %s into %s (%s) in %v; start it with: %s\n",
		what, pos[0], *dataDir, *backend, time.Since(began).Round(time.Millisecond), start)
	return nil
}

// urlsOf returns name's URLs in an --initial-cluster list.
func urlsOf(initialCluster, name string) []string {
	var urls []string
	for _, part := range strings.Split(initialCluster, ",") {
		if n, u, ok := strings.Cut(strings.TrimSpace(part), "="); ok && n == name {
			urls = append(urls, u)
		}
	}
	return urls
}

// restoreStrata restores a Strata snapshot's engine backup into dir.
func restoreStrata(reg *engine.Registry, backend, dir string, rd io.Reader) error {
	if err := reg.Restore(backend, dir, rd); err != nil {
		return err
	}
	be, err := reg.Open(backend, dir, engine.Options{})
	if err != nil {
		return err
	}
	if err := mvcc.ResetAppliedIndex(be); err != nil {
		be.Close()
		return err
	}
	return be.Close()
}

// runDefrag defragments a stopped member's engine (engine.Defragmenter).
// --backend defaults to the engine recorded in the member's identity.
func runDefrag(args []string) error {
	reg := backends.Registry()
	fs := flag.NewFlagSet("strata defrag", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "Data directory of the stopped member (required).")
	backend := fs.String("backend", "", "Storage engine: "+strings.Join(reg.Names(), "|")+" (default: the member's).")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("defrag: unexpected arguments %q", pos)
	}
	if *dataDir == "" {
		return errors.New("defrag: --data-dir is required")
	}
	if *backend == "" {
		*backend = memberEngine(*dataDir)
	}
	if !reg.Has(*backend) {
		return fmt.Errorf("--backend: unknown engine %q (%s)", *backend, strings.Join(reg.Names(), "|"))
	}
	dir := memberDataDir(*dataDir)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("defrag: %w", err)
	}
	be, err := reg.Open(*backend, dir, engine.Options{})
	if err != nil {
		return err
	}
	d, ok := be.(engine.Defragmenter)
	if !ok {
		be.Close()
		return fmt.Errorf("defrag: engine %s cannot defragment", *backend)
	}
	before, _ := be.Stats()
	if err := d.Defrag(context.Background()); err != nil {
		be.Close()
		return fmt.Errorf("defrag: %w", err)
	}
	after, _ := be.Stats()
	if err := be.Close(); err != nil {
		return err
	}
	fmt.Printf("Finished defragmenting %s (%s): %d -> %d bytes\n", *dataDir, *backend, before.Size, after.Size)
	return nil
}

// memberEngine returns the engine recorded in dataDir's identity file,
// else the engine whose files are in the member's data directory (a
// restored member has no identity before its first start), else the
// default engine.
func memberEngine(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, "strata-member.json"))
	if err == nil {
		var id struct {
			Engine string `json:"engine"`
		}
		if json.Unmarshal(b, &id) == nil && id.Engine != "" {
			return id.Engine
		}
	}
	if e := detectEngine(memberDataDir(dataDir)); e != "" {
		return e
	}
	return backends.Default
}

// detectEngine names the engine whose files are in dir, or "".
func detectEngine(dir string) string {
	exists := func(pattern string) bool {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		return len(m) > 0
	}
	switch {
	case exists("KEYREGISTRY"):
		return "badger"
	case exists("OPTIONS-*"):
		return "pebble"
	case exists("data.db"):
		return "bbolt"
	}
	return ""
}
