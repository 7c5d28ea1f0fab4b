package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-kv/strata/auth"
	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
	"github.com/strata-kv/strata/etcddb"
	"github.com/strata-kv/strata/mvcc"
	"github.com/strata-kv/strata/server"
)

// etcdRestoreSummary is what restoreEtcd read.
type etcdRestoreSummary struct {
	rev, compactRev int64
	revs, leases    int
	users, roles    int
	authEnabled     bool
	size            int64
}

func (s etcdRestoreSummary) String() string {
	auth := "disabled"
	if s.authEnabled {
		auth = "enabled"
	}
	return fmt.Sprintf("etcd database (%d bytes; revision %d, compacted at %d; %d revisions, %d leases; auth %s, %d users, %d roles)",
		s.size, s.rev, s.compactRev, s.revs, s.leases, auth, s.users, s.roles)
}

// restoreEtcd copies the keyspace of the etcd snapshot or database at path
// into a new store in dir, on engine backend: every revision etcd kept,
// the compact revisions, the leases and the auth store (users, roles, the
// enabled flag and the auth revision), as etcdutl's restore keeps them.
// Members and alarms are left behind, as etcdutl's restore leaves the
// members behind.
func restoreEtcd(reg *engine.Registry, backend, dir, path string, skipHash bool) (etcdRestoreSummary, error) {
	var sum etcdRestoreSummary
	r, err := etcddb.Open(path, etcddb.OpenOptions{SkipHashCheck: skipHash})
	if errors.Is(err, etcddb.ErrNotEtcd) {
		return sum, fmt.Errorf("neither a Strata snapshot nor an etcd v3 snapshot or database: %w", err)
	}
	if err != nil {
		return sum, err
	}
	defer r.Close()
	sum.size = r.Size()
	m, err := r.Meta()
	if err != nil {
		return sum, err
	}
	st := auth.EtcdState{Enabled: m.AuthEnabled, Revision: m.AuthRevision, Users: map[string][]byte{}, Roles: map[string][]byte{}}
	err = r.ForEachAuthUser(func(k, v []byte) error { st.Users[string(k)] = bytes.Clone(v); return nil })
	if err == nil {
		err = r.ForEachAuthRole(func(k, v []byte) error { st.Roles[string(k)] = bytes.Clone(v); return nil })
	}
	if err != nil {
		return sum, err
	}
	sum.users, sum.roles, sum.authEnabled = len(st.Users), len(st.Roles), st.Enabled
	be, err := reg.Open(backend, dir, engine.Options{})
	if err != nil {
		return sum, err
	}
	im, err := mvcc.NewImporter(be)
	if err != nil {
		be.Close()
		return sum, err
	}
	err = r.ForEachRevision(im.Revision)
	if err == nil {
		err = r.ForEachLease(im.Lease)
	}
	if err == nil {
		err = auth.ImportEtcd(im, st)
	}
	if err == nil {
		sum.rev, sum.revs, sum.leases, err = im.Finish(mvcc.ImportMeta{
			FinishedCompactRev:  m.FinishedCompactRev,
			ScheduledCompactRev: m.ScheduledCompactRev,
			LeaseSeq:            m.LeaseSeq,
		})
	}
	if err != nil {
		im.Abort()
	}
	sum.compactRev = max(m.FinishedCompactRev, m.ScheduledCompactRev) // a scheduled compaction resumes at start
	if cerr := be.Close(); err == nil {
		err = cerr
	}
	return sum, err
}

// runSnapshotExport writes an etcd snapshot file (a bbolt database in
// etcd's schema with its sha256 appended, as `etcdctl snapshot save`
// writes) that `etcdutl snapshot restore` restores into an etcd member
// with the same keys, revisions, compact revision and leases. The source
// is a stopped member's data directory, or a Strata snapshot file (with
// the engine of the member it was saved from).
func runSnapshotExport(args []string) error {
	reg := backends.Registry()
	fs := flag.NewFlagSet("strata snapshot export", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "Data directory of a stopped member to export.")
	snapshot := fs.String("snapshot", "", "A Strata snapshot file (etcdctl snapshot save) to export, instead of a data directory.")
	backend := fs.String("backend", "", "Storage engine: "+strings.Join(reg.Names(), "|")+" (default: the member's; required with --snapshot).")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("snapshot export: one output file is required")
	}
	if (*dataDir == "") == (*snapshot == "") {
		return errors.New("snapshot export: give one of --data-dir and --snapshot")
	}
	if *snapshot != "" && *backend == "" {
		return errors.New("snapshot export: --backend is required with --snapshot (the engine of the member it was saved from)")
	}
	if *dataDir != "" {
		if *backend == "" {
			*backend = memberEngine(*dataDir)
		} else if e := detectEngine(memberDataDir(*dataDir)); e != "" && e != *backend {
			return fmt.Errorf("snapshot export: %s holds a %s engine, not %s", *dataDir, e, *backend)
		}
	}
	if !reg.Has(*backend) {
		return fmt.Errorf("--backend: unknown engine %q (%s)", *backend, strings.Join(reg.Names(), "|"))
	}
	out := pos[0]
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("snapshot export: %s exists", out)
	}
	start := time.Now()
	dir := ""
	if *dataDir != "" {
		dir = memberDataDir(*dataDir)
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("snapshot export: %w", err)
		}
	} else {
		// Unpack the snapshot's engine backup next to the output.
		tmp, err := os.MkdirTemp(filepath.Dir(out), filepath.Base(out)+".unpack-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		f, err := os.Open(*snapshot)
		if err != nil {
			return fmt.Errorf("snapshot export: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		rd, err := server.ReadSnapshot(f, fi.Size())
		if err != nil {
			return fmt.Errorf("snapshot export: %s: %w", *snapshot, err)
		}
		dir = filepath.Join(tmp, "data")
		if err := reg.Restore(*backend, dir, rd); err != nil {
			return fmt.Errorf("snapshot export: %s: %w", *snapshot, err)
		}
	}
	be, err := reg.Open(*backend, dir, engine.Options{})
	if err != nil {
		return fmt.Errorf("snapshot export: %w", err)
	}
	defer be.Close()
	w, err := etcddb.Create(out)
	if err != nil {
		return fmt.Errorf("snapshot export: %w", err)
	}
	revs, leases := 0, 0
	m, err := mvcc.Export(be,
		func(k, v []byte) error { revs++; return w.Revision(k, v) },
		func(k, v []byte) error { leases++; return w.Lease(k, v) })
	if err != nil {
		w.Abort()
		return fmt.Errorf("snapshot export: %w", err)
	}
	st, err := auth.ExportEtcd(mvcc.BackendAux{Backend: be})
	if err == nil {
		err = writeEtcdAuth(w, st)
	}
	if err != nil {
		w.Abort()
		return fmt.Errorf("snapshot export: %w", err)
	}
	size, err := w.Finish(etcddb.FinishMeta{
		Rev:                 m.Rev,
		FinishedCompactRev:  m.FinishedCompactRev,
		ScheduledCompactRev: m.ScheduledCompactRev,
		StorageVersion:      server.StorageVersion,
		LeaseSeq:            m.LeaseSeq,
		AuthEnabled:         st.Enabled,
		AuthRevision:        st.Revision,
	})
	if err != nil {
		return fmt.Errorf("snapshot export: %w", err)
	}
	fmt.Printf("exported revision %d (compacted at %d; %d revisions, %d leases; %d users, %d roles) to %s (%d bytes) in %v; restore it with: etcdutl snapshot restore %s\n",
		m.Rev, max(m.FinishedCompactRev, m.ScheduledCompactRev), revs, leases, len(st.Users), len(st.Roles), out, size, time.Since(start).Round(time.Millisecond), out)
	return nil
}

// writeEtcdAuth puts the auth store's users and roles into etcd's buckets.
func writeEtcdAuth(w *etcddb.Writer, st auth.EtcdState) error {
	for _, name := range slices.Sorted(maps.Keys(st.Users)) {
		if err := w.AuthUser([]byte(name), st.Users[name]); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(st.Roles)) {
		if err := w.AuthRole([]byte(name), st.Roles[name]); err != nil {
			return err
		}
	}
	return nil
}
