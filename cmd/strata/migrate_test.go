package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// memberState is what a member answers that a migration must keep.
type memberState struct {
	hash       uint32
	rev        int64
	compactRev int64
	kvs        string
	leases     []int64
}

func captureState(t *testing.T, ctx context.Context, cli *clientv3.Client) memberState {
	t.Helper()
	h, err := cli.HashKV(ctx, cli.Endpoints()[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	st := memberState{hash: h.Hash, rev: h.Header.Revision, compactRev: h.CompactRevision}
	g, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range g.Kvs {
		st.kvs += kvString(kv) + " "
	}
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Leases {
		st.leases = append(st.leases, int64(l.ID))
	}
	slices.Sort(st.leases)
	return st
}

// newestSnapshot returns the state file of the member's newest raft
// snapshot.
func newestSnapshot(t *testing.T, dataDir string) string {
	t.Helper()
	states, _ := filepath.Glob(filepath.Join(dataDir, "member", "raft", "snapshots", "snapshots", "*", "state.bin"))
	if len(states) == 0 {
		t.Fatal("no raft snapshot")
	}
	slices.Sort(states)
	return states[len(states)-1]
}

// TestMigrate moves one member's store through every pair of engines
// (bbolt→pebble→badger→bbolt→badger→pebble→bbolt) and checks after each
// move that it serves the same keys, revisions, HashKV and leases, and
// that lease IDs go on from the sequence (a new lease never reuses the ID
// of a revoked one, issue 13).
func TestMigrate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	dataDir := filepath.Join(t.TempDir(), "m")
	chain := []string{"bbolt", "pebble", "badger", "bbolt", "badger", "pebble", "bbolt"}
	var granted []int64 // every lease ID ever granted
	var want memberState
	for step, eng := range chain {
		if step > 0 {
			before := newestSnapshot(t, dataDir)
			if err := run([]string{"migrate", "--data-dir", dataDir, "--to", eng}); err != nil {
				t.Fatalf("migrate %s -> %s: %v", chain[step-1], eng, err)
			}
			if left, _ := filepath.Glob(memberDataDir(dataDir) + ".*"); len(left) > 0 {
				t.Fatalf("migrate left %v", left)
			}
			// The newest raft snapshot is rewritten, naming the moved store.
			after := newestSnapshot(t, dataDir)
			if after == before {
				t.Fatalf("migrate left the newest raft snapshot %s as it was", after)
			}
			const ref = "strata-snapshot-ref/1\n"
			head := make([]byte, len(ref))
			if f, err := os.Open(after); err != nil {
				t.Fatal(err)
			} else {
				io.ReadFull(f, head)
				f.Close()
			}
			if string(head) != ref {
				t.Fatalf("newest raft snapshot %s starts %q, not a reference to the store", after, head)
			}
		}
		s, cli := startMember(t, "m", dataDir, eng)
		if step > 0 {
			if got := captureState(t, ctx, cli); got.hash != want.hash || got.rev != want.rev ||
				got.compactRev != want.compactRev || got.kvs != want.kvs || !slices.Equal(got.leases, want.leases) {
				t.Fatalf("after migrating to %s:\n%+v\nwant\n%+v", eng, got, want)
			}
		}
		// More history, a compaction, and leases: one kept with a key, one revoked.
		for i := range 20 {
			if _, err := cli.Put(ctx, fmt.Sprintf("k%02d", i%7), fmt.Sprint(step, "-", i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Delete(ctx, fmt.Sprintf("k%02d", step)); err != nil {
			t.Fatal(err)
		}
		if step%2 == 1 {
			g, _ := cli.Get(ctx, "k")
			if _, err := cli.Compact(ctx, g.Header.Revision-5); err != nil {
				t.Fatal(err)
			}
		}
		for j := range 2 {
			l, err := cli.Grant(ctx, 600)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(granted, int64(l.ID)) {
				t.Fatalf("on %s: lease ID %x granted again", eng, l.ID)
			}
			granted = append(granted, int64(l.ID))
			if j == 0 {
				if _, err := cli.Put(ctx, fmt.Sprint("leased", step), "x", clientv3.WithLease(l.ID)); err != nil {
					t.Fatal(err)
				}
			} else if _, err := cli.Revoke(ctx, l.ID); err != nil {
				t.Fatal(err)
			}
		}
		want = captureState(t, ctx, cli)
		if step == 0 {
			if err := s.Node().Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
		stopMember(t, s, cli)
	}

	// Refused, changing nothing.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "bbolt"}, "on bbolt already"},
		{[]string{"--from", "pebble", "--to", "badger"}, "does not hold pebble data"},
		{[]string{"--to", "rocksdb"}, "unknown engine"},
		{[]string{"--from", "bbolt"}, "are required"},
	} {
		err := run(append([]string{"migrate", "--data-dir", dataDir}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("migrate %q: %v, want an error with %q", c.args, err, c.want)
		}
	}
	if err := run([]string{"migrate", "--data-dir", filepath.Join(t.TempDir(), "none"), "--to", "pebble"}); err == nil {
		t.Fatal("migrating a missing data directory succeeded")
	}
	if _, err := os.Stat(filepath.Join(memberDataDir(dataDir), "data.db")); err != nil {
		t.Fatalf("the bbolt store is gone after refused migrations: %v", err)
	}
}

// TestExportKeepsLeaseSeq exports a store to etcd's format and restores
// it: a lease granted after the round trip does not get the ID of a
// lease revoked before it.
func TestExportKeepsLeaseSeq(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	s, cli := startMember(t, "m", src, "bbolt")
	var revoked []int64
	for range 3 {
		l, err := cli.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Revoke(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
		revoked = append(revoked, int64(l.ID))
	}
	stopMember(t, s, cli)
	out := filepath.Join(dir, "etcd.db")
	if err := run([]string{"snapshot", "export", "--data-dir", src, out}); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "dst")
	if err := run([]string{"snapshot", "restore", out, "--data-dir", dst, "--backend", "pebble"}); err != nil {
		t.Fatal(err)
	}
	s, cli = startMember(t, "m", dst, "pebble")
	defer stopMember(t, s, cli)
	l, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(revoked, int64(l.ID)) {
		t.Fatalf("lease ID %x, revoked before the export, granted again", l.ID)
	}
}
