package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/replication"
	"github.com/strata-kv/strata/server"
)

// runMigrate moves a stopped member's store to another engine:
//
//	strata migrate --data-dir DIR --to ENGINE [--from ENGINE]
//
// The store is copied key by key (engine.Copy: revisions, leases and the
// lease ID sequence, the applied index, compaction state, member
// attributes: everything) into a new directory beside it, compared with
// the original, and swapped in; the newest raft snapshot is rewritten as
// an engine dump of it; the raft log is kept, so the member
// restarts where it stopped, on the new engine (start it with --backend
// ENGINE). Until the swap the original is untouched, and a failed
// migration removes its copy.
func runMigrate(args []string) error {
	reg := backends.Registry()
	fs := flag.NewFlagSet("strata migrate", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "Data directory of the stopped member (required).")
	from := fs.String("from", "", "Engine the member's store is on: "+strings.Join(reg.Names(), "|")+" (default: the member's).")
	to := fs.String("to", "", "Engine to move the store to: "+strings.Join(reg.Names(), "|")+" (required).")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("migrate: unexpected arguments %q", pos)
	}
	if *dataDir == "" || *to == "" {
		return errors.New("migrate: --data-dir and --to are required")
	}
	if *from == "" {
		*from = memberEngine(*dataDir)
	}
	for _, e := range []string{*from, *to} {
		if !reg.Has(e) {
			return fmt.Errorf("migrate: unknown engine %q (%s)", e, strings.Join(reg.Names(), "|"))
		}
	}
	if *from == *to {
		return fmt.Errorf("migrate: the store is on %s already", *to)
	}
	dir := memberDataDir(*dataDir)
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if found := detectEngine(dir); found != *from {
		return fmt.Errorf("migrate: %s does not hold %s data (found %q)", dir, *from, found)
	}
	start := time.Now()
	tmp := dir + ".migrating"
	if err := os.RemoveAll(tmp); err != nil { // left by a failed migration
		return fmt.Errorf("migrate: %w", err)
	}
	n, err := copyStore(reg, *from, *to, dir, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("migrate: %w", err)
	}
	// The swap: a crash in it leaves the original in DIR/member/data or,
	// between the renames, in DIR/member/data.<from>.
	old := dir + "." + *from
	if err := os.Rename(dir, old); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("migrate: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("migrate: %w (the original store is in %s)", err, old)
	}
	if err := engine.SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := server.SetMemberEngine(*dataDir, *to); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Printf("migrated %s from %s to %s: %d records in %v; start it with --backend %s\n",
		*dataDir, *from, *to, n, time.Since(start).Round(time.Millisecond), *to)
	return nil
}

// copyStore copies the store in dir on engine from into the new
// directory tmp on engine to, and checks the copy.
func copyStore(reg *engine.Registry, from, to, dir, tmp string) (int64, error) {
	src, err := reg.Open(from, dir, engine.Options{})
	if err != nil {
		return 0, err
	}
	defer src.Close()
	dst, err := reg.Open(to, tmp, engine.Options{})
	if err != nil {
		return 0, err
	}
	n, err := engine.Copy(dst, src)
	if err == nil {
		var same bool
		var at []byte
		if same, at, err = engine.Equal(src, dst); err == nil && !same {
			err = fmt.Errorf("the copy differs from the original at key %q", at)
		}
	}
	if err == nil {
		// Raft snapshots written before engine dumps are the old engine's
		// backups; a new newest snapshot names the store instead.
		err = replication.RewriteSnapshot(filepath.Dir(dir), nil)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return n, err
}
