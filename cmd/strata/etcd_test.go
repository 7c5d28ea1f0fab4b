package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	etcdutl "go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/strata-kv/strata/etcddb"
	"github.com/strata-kv/strata/internal/freeport"
)

// etcdMember is an embedded etcd v3.7.3 member on loopback ports.
type etcdMember struct {
	e       *embed.Etcd
	cli     *clientv3.Client
	peer    string
	stopped bool
}

// startEtcd starts an embedded etcd named name on dir (a new member, or
// the one etcdutl restored there with peer as its peer URL).
func startEtcd(t *testing.T, name, dir, peer string) *etcdMember {
	t.Helper()
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	if peer == "" {
		peer = "http://" + addrs[1]
	}
	pu, err := url.Parse(peer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cu := url.URL{Scheme: "http", Host: addrs[0]}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.BcryptCost = uint(bcrypt.MinCost) // passwords hashed here are checked fast, under -race too
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("etcd not ready after 30s")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.Host}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	return &etcdMember{e: e, cli: cli, peer: peer}
}

func (m *etcdMember) stop() {
	if m.stopped {
		return
	}
	m.stopped = true
	m.cli.Close()
	m.e.Close()
}

// answers is what a member answers about its keyspace, without the
// headers' member and cluster IDs.
type answers struct {
	rev        int64
	compactRev int64
	hash       uint32
	ranges     map[int64]string // revision -> the range's kvs or error
	leases     []string         // "ID granted TTL keys", by ID
	ttls       map[int64]int64  // lease ID -> remaining TTL
	watch      string           // a watch from revision 16 with prev_kv, and one from below the compact revision
}

// checkRevs are the revisions at which answers reads the whole keyspace;
// the data set compacts at 15 and ends at 31.
var checkRevs = []int64{1, 14, 15, 16, 20, 24, 27, 30, 31, 32, 40}

func capture(t *testing.T, cli *clientv3.Client) answers {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var a answers
	h, err := cli.HashKV(ctx, cli.Endpoints()[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	a.rev, a.compactRev, a.hash = h.Header.Revision, h.CompactRevision, h.Hash
	a.ranges = make(map[int64]string)
	for _, rev := range checkRevs {
		for _, opts := range [][]clientv3.OpOption{
			{clientv3.WithPrefix(), clientv3.WithRev(rev)},
			{clientv3.WithFromKey(), clientv3.WithRev(rev), clientv3.WithLimit(3), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)},
		} {
			resp, err := cli.Get(ctx, "", opts...)
			var s string
			if err != nil {
				s = "error: " + err.Error()
			} else {
				s = fmt.Sprintf("rev %d count %d more %v:", resp.Header.Revision, resp.Count, resp.More)
				for _, kv := range resp.Kvs {
					s += " " + kvString(kv)
				}
			}
			a.ranges[rev] += s + "\n"
		}
	}
	a.watch = captureWatch(t, cli, a.rev)
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a.ttls = make(map[int64]int64)
	for _, l := range ls.Leases {
		ttl, err := cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		keys := make([]string, len(ttl.Keys))
		for i, k := range ttl.Keys {
			keys[i] = string(k)
		}
		slices.Sort(keys)
		a.leases = append(a.leases, fmt.Sprintf("%x granted %d keys %q", l.ID, ttl.GrantedTTL, keys))
		a.ttls[int64(l.ID)] = ttl.TTL
	}
	slices.Sort(a.leases)
	return a
}

// captureWatch watches every key from revision 16 (after the compaction,
// as a Kubernetes watch resumes from a resourceVersion) up to rev, and
// from 14 (compacted).
func captureWatch(t *testing.T, cli *clientv3.Client, rev int64) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s strings.Builder
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	for resp := range cli.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(16), clientv3.WithPrevKV()) {
		if err := resp.Err(); err != nil {
			t.Fatalf("watch from 16: %v", err)
		}
		done := false
		for _, ev := range resp.Events {
			fmt.Fprintf(&s, "%s %s", ev.Type, kvString(ev.Kv))
			if ev.PrevKv != nil {
				fmt.Fprintf(&s, " prev %s", kvString(ev.PrevKv))
			}
			s.WriteString("\n")
			done = ev.Kv.ModRevision >= rev
		}
		if done {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("watch from 16 did not reach revision %d", rev)
	}
	wcancel()
	resp := <-cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(14))
	fmt.Fprintf(&s, "from 14: canceled %v compact revision %d", resp.Canceled, resp.CompactRevision)
	return s.String()
}

func kvString(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%s=%s(c%d,m%d,v%d,l%x)", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

// compareAnswers fails unless got answers as want did. Remaining TTLs
// restart from the granted TTL after a restore (etcd's lessor refreshes
// every lease when its member becomes leader), so they are only checked
// to be live and at most granted.
func compareAnswers(t *testing.T, what string, got, want answers) {
	t.Helper()
	if got.rev != want.rev || got.compactRev != want.compactRev || got.hash != want.hash {
		t.Errorf("%s: HashKV: revision %d, compact revision %d, hash %x; want %d, %d, %x",
			what, got.rev, got.compactRev, got.hash, want.rev, want.compactRev, want.hash)
	}
	for _, rev := range checkRevs {
		if got.ranges[rev] != want.ranges[rev] {
			t.Errorf("%s: range at %d:\n%s\nwant\n%s", what, rev, got.ranges[rev], want.ranges[rev])
		}
	}
	if got.watch != want.watch {
		t.Errorf("%s: watch:\n%s\nwant\n%s", what, got.watch, want.watch)
	}
	if !slices.Equal(got.leases, want.leases) {
		t.Errorf("%s: leases:\n%q\nwant\n%q", what, got.leases, want.leases)
	}
	for id, ttl := range got.ttls {
		if ttl <= 0 || ttl > want.ttls[id]+2 {
			t.Errorf("%s: lease %x: TTL %d, etcd had %d", what, id, ttl, want.ttls[id])
		}
	}
}

// etcdData is the data set: an etcd member's snapshot, its stopped data
// directory, and what it answered.
type etcdData struct {
	snapshot string // etcdctl snapshot save's file
	db       string // the stopped member's member/snap/db
	want     answers
}

// buildEtcdData writes history, deletes, a txn, leases with and without
// keys and a compaction at 15 into an embedded etcd, ending at revision 31.
func buildEtcdData(t *testing.T) etcdData {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	m := startEtcd(t, "etcd", filepath.Join(dir, "etcd"), "")
	defer m.stop()
	cli := m.cli
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 { // revisions 2-11
		must(cli.Put(ctx, fmt.Sprintf("k%d", i), fmt.Sprint("v", i)))
	}
	for r := range 2 { // 12-21
		for i := range 5 {
			must(cli.Put(ctx, fmt.Sprintf("k%d", i), fmt.Sprint("v", i, "-", r)))
		}
	}
	must(cli.Delete(ctx, "k5"))                                                                                     // 22
	must(cli.Delete(ctx, "k6", clientv3.WithRange("k8")))                                                           // 23
	must(cli.Txn(ctx).Then(clientv3.OpPut("t1", "a"), clientv3.OpPut("t2", "b"), clientv3.OpDelete("k9")).Commit()) // 24
	l1, err := cli.Grant(ctx, 600)
	must(l1, err)
	l2, err := cli.Grant(ctx, 300) // no keys
	must(l2, err)
	l3, err := cli.Grant(ctx, 900)
	must(l3, err)
	must(cli.Put(ctx, "lease/a", "1", clientv3.WithLease(l1.ID))) // 25
	must(cli.Put(ctx, "lease/b", "2", clientv3.WithLease(l1.ID))) // 26
	must(cli.Put(ctx, "lease/c", "3", clientv3.WithLease(l3.ID))) // 27
	must(cli.Put(ctx, "lease/c", "4"))                            // 28: detached from l3
	must(cli.Compact(ctx, 15, clientv3.WithCompactPhysical()))
	must(cli.Put(ctx, "k5", "again"))                                    // 29: created again
	must(cli.Delete(ctx, "k1"))                                          // 30
	must(cli.Put(ctx, "bin\x00\xff", "\x00", clientv3.WithLease(l3.ID))) // 31
	d := etcdData{want: capture(t, cli)}
	if d.want.rev != 31 || d.want.compactRev != 15 {
		t.Fatalf("etcd data set at revision %d compacted at %d, want 31 and 15", d.want.rev, d.want.compactRev)
	}
	d.snapshot = filepath.Join(dir, "etcd.snapshot")
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(d.snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m.stop()
	d.db = filepath.Join(dir, "etcd", "member", "snap", "db")
	return d
}

// TestEtcdRoundTrip restores an etcd snapshot (and a stopped etcd
// member's db) into Strata on every engine, checks that a member started
// on it answers as etcd did, exports it back to an etcd snapshot, restores
// that with etcdutl's own restore and checks that etcd answers the same.
func TestEtcdRoundTrip(t *testing.T) {
	d := buildEtcdData(t)
	type source struct {
		name string
		file string
		args []string
	}
	cases := []struct {
		backend string
		src     source
	}{
		{"bbolt", source{"snapshot", d.snapshot, nil}},
		{"pebble", source{"snapshot", d.snapshot, nil}},
		{"badger", source{"snapshot", d.snapshot, nil}},
		{"bbolt", source{"member-db", d.db, []string{"--skip-hash-check"}}},
		{"pebble", source{"member-db", d.db, []string{"--skip-hash-check"}}},
	}
	for _, c := range cases {
		t.Run(c.backend+"/"+c.src.name, func(t *testing.T) {
			dir := t.TempDir()
			restored := filepath.Join(dir, "restored")
			args := append([]string{"snapshot", "restore", c.src.file, "--name", "r", "--data-dir", restored, "--backend", c.backend}, c.src.args...)
			if err := run(args); err != nil {
				t.Fatal(err)
			}
			// Exported before the member's first start, the engine is
			// found from its files.
			out := filepath.Join(dir, "export.db")
			if err := run([]string{"snapshot", "export", "--data-dir", restored, out}); err != nil {
				t.Fatal(err)
			}
			if err := run([]string{"snapshot", "export", "--data-dir", restored, out}); err == nil {
				t.Fatal("export over an existing file succeeded")
			}
			other := map[string]string{"bbolt": "pebble", "pebble": "badger", "badger": "bbolt"}[c.backend]
			if err := run([]string{"snapshot", "export", "--data-dir", restored, "--backend", other, out + "2"}); err == nil {
				t.Fatalf("export of a %s member as %s succeeded", c.backend, other)
			}
			s, cli := startMember(t, "r", restored, c.backend)
			compareAnswers(t, "strata", capture(t, cli), d.want)
			stopMember(t, s, cli)
			if c.src.name != "snapshot" {
				return
			}
			checkEtcdServes(t, out, d.want)
		})
	}
}

// checkEtcdServes restores snap with etcdutl's restore, starts an
// embedded etcd on it and compares its answers with want; when
// STRATA_ETCD names a real etcd binary, that one is started too.
func checkEtcdServes(t *testing.T, snap string, want answers) {
	t.Helper()
	if bin := os.Getenv("STRATA_ETCD"); bin != "" {
		checkRealEtcdServes(t, bin, snap, want)
	}
	addrs, err := freeport.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	peer := "http://" + addrs[0]
	dir := filepath.Join(t.TempDir(), "etcd")
	etcdutlRestore(t, snap, "back", dir, peer)
	m := startEtcd(t, "back", dir, peer)
	defer m.stop()
	compareAnswers(t, "etcd from the export", capture(t, m.cli), want)
}

// etcdutlRestore runs `etcdutl snapshot restore`: the real one when
// STRATA_ETCDUTL names it, else etcdutl's own restore in process.
func etcdutlRestore(t *testing.T, snap, name, dir, peer string) {
	t.Helper()
	if utl := os.Getenv("STRATA_ETCDUTL"); utl != "" {
		out, err := exec.Command(utl, "snapshot", "restore", snap, "--name", name, "--data-dir", dir,
			"--initial-cluster", name+"="+peer, "--initial-advertise-peer-urls", peer).CombinedOutput()
		if err != nil {
			t.Fatalf("etcdutl snapshot restore: %v\n%s", err, out)
		}
		return
	}
	err := etcdutl.NewV3(zap.NewNop()).Restore(etcdutl.RestoreConfig{
		SnapshotPath:        snap,
		Name:                name,
		OutputDataDir:       dir,
		PeerURLs:            []string{peer},
		InitialCluster:      name + "=" + peer,
		InitialClusterToken: "etcd-cluster",
	})
	if err != nil {
		t.Fatalf("etcdutl snapshot restore: %v", err)
	}
}

// checkRealEtcdServes restores snap and serves it with the real etcd bin.
func checkRealEtcdServes(t *testing.T, bin, snap string, want answers) {
	t.Helper()
	cli := startRealEtcd(t, bin, snap, nil)
	compareAnswers(t, "real etcd from the export", capture(t, cli), want)
}

// startRealEtcd restores snap with etcdutl and starts the real etcd bin on
// it until the test ends; it returns a client (made with opts, if any)
// once etcd serves.
func startRealEtcd(t *testing.T, bin, snap string, opts func(*clientv3.Config)) *clientv3.Client {
	t.Helper()
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "real")
	peer := "http://" + addrs[1]
	etcdutlRestore(t, snap, "real", dir, peer)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--name", "real", "--data-dir", dir, "--log-level", "error",
		"--listen-client-urls", "http://"+addrs[0], "--advertise-client-urls", "http://"+addrs[0],
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "real="+peer)
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	cfg := clientv3.Config{Endpoints: []string{addrs[0]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if opts != nil {
		opts(&cfg)
	}
	var cli *clientv3.Client
	for i := 0; ; i++ {
		if cli == nil {
			// With a user, New logs in, which fails until etcd serves.
			if cli, err = clientv3.New(cfg); err != nil {
				cli = nil
			}
		}
		if cli != nil {
			c, cc := context.WithTimeout(ctx, time.Second)
			_, err = cli.Get(c, "x")
			cc()
			if err == nil {
				break
			}
		}
		if i == 50 {
			t.Fatalf("real etcd did not serve: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestRestoreBadFiles checks that broken and foreign files are refused
// with etcd's wording where etcdutl has one, and leave no data directory
// (nor a temporary one) behind.
func TestRestoreBadFiles(t *testing.T) {
	d := buildEtcdData(t)
	snap, err := os.ReadFile(d.snapshot)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(d.db)
	if err != nil {
		t.Fatal(err)
	}
	flipped := slices.Clone(snap)
	flipped[len(flipped)/2] ^= 0x40
	// The flags of the page holding a revision of k5 (in the key bucket),
	// and of every other page holding its value: bbolt copies pages on
	// write, so a freed page may still hold an old copy, and which one is
	// first in the file depends on etcd's commits.
	flippedDB := slices.Clone(db)
	pages := map[int]bool{}
	for off := 0; ; {
		i := bytes.Index(db[off:], []byte("again"))
		if i < 0 {
			break
		}
		pages[(off+i)/4096] = true
		off += i + 1
	}
	if len(pages) == 0 {
		t.Fatal("no k5 value in the etcd db")
	}
	for p := range pages {
		flippedDB[p*4096+8] ^= 0xff
	}
	notEither := make([]byte, 4096+32)
	for i := range notEither {
		notEither[i] = byte(i * 7)
	}
	cases := []struct {
		name string
		data []byte
		args []string
		want string
	}{
		{"truncated", snap[:len(snap)/2], nil, "snapshot missing hash but --skip-hash-check=false"},
		{"truncated-skip-hash", snap[:len(snap)/2], []string{"--skip-hash-check"}, "snapshot file integrity check failed"},
		{"truncated-to-a-page", snap[:4096], []string{"--skip-hash-check"}, "snapshot file integrity check failed"},
		{"flipped-byte", flipped, nil, "snapshot file integrity check failed: sha256 mismatch"},
		{"flipped-db-page", flippedDB, []string{"--skip-hash-check"}, "snapshot file integrity check failed"},
		{"neither", notEither, nil, "neither a Strata snapshot nor an etcd v3 snapshot or database"},
		{"text", []byte("hello\n"), []string{"--skip-hash-check"}, "neither a Strata snapshot nor an etcd v3 snapshot or database"},
		{"empty", nil, nil, "neither a Strata snapshot nor an etcd v3 snapshot or database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "in.db")
			if err := os.WriteFile(file, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			dataDir := filepath.Join(dir, "out", "r.strata")
			err := run(append([]string{"snapshot", "restore", file, "--data-dir", dataDir}, c.args...))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("restore: %v, want an error with %q", err, c.want)
			}
			left, _ := os.ReadDir(filepath.Join(dir, "out"))
			if len(left) != 0 {
				t.Fatalf("restore left %v behind", left)
			}
		})
	}
}

// TestExportStrataSnapshot exports a Strata snapshot file (not a data
// directory) and checks etcd serves it as the member did.
func TestExportStrataSnapshot(t *testing.T) {
	d := buildEtcdData(t)
	dir := t.TempDir()
	restored := filepath.Join(dir, "restored")
	if err := run([]string{"snapshot", "restore", d.snapshot, "--data-dir", restored, "--backend", "pebble"}); err != nil {
		t.Fatal(err)
	}
	s, cli := startMember(t, "r", restored, "pebble")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "strata.snapshot")
	f, err := os.Create(snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	f.Close()
	stopMember(t, s, cli)
	out := filepath.Join(dir, "export.db")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--snapshot", snap}, "--backend is required"},
		{[]string{"--snapshot", snap, "--data-dir", restored}, "give one of"},
		{[]string{"--snapshot", d.snapshot, "--backend", "pebble"}, "not a Strata snapshot"},
	} {
		err := run(append([]string{"snapshot", "export", out}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("export %q: %v, want an error with %q", c.args, err, c.want)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("failed export left %s", out)
		}
	}
	if err := run([]string{"snapshot", "export", out, "--snapshot", snap, "--backend", "pebble"}); err != nil {
		t.Fatal(err)
	}
	checkEtcdServes(t, out, d.want)
	// The export is an etcd snapshot: Strata restores it too.
	again := filepath.Join(dir, "again")
	if err := run([]string{"snapshot", "restore", out, "--data-dir", again, "--backend", "badger"}); err != nil {
		t.Fatal(err)
	}
	s, cli = startMember(t, "r", again, "badger")
	defer stopMember(t, s, cli)
	compareAnswers(t, "strata from the export", capture(t, cli), d.want)
}

// TestRestoreRemainingTTL restores, into Strata and with etcdutl into
// etcd, an etcd file whose lease carries a checkpointed remaining TTL
// (etcd's lease checkpointing writes one): both start the lease from the
// remaining TTL, not the granted one.
func TestRestoreRemainingTTL(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "checkpointed.db")
	w, err := etcddb.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	const id, granted, remaining = 0x1234, 600, 100
	kv, err := proto.Marshal(&mvccpb.KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 2, Version: 1, Value: []byte("v"), Lease: id})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := proto.Marshal(&leasepb.Lease{ID: id, TTL: granted, RemainingTTL: remaining})
	if err != nil {
		t.Fatal(err)
	}
	rev := binary.BigEndian.AppendUint64(nil, 2)
	rev = binary.BigEndian.AppendUint64(append(rev, '_'), 0)
	if err := w.Revision(rev, kv); err != nil {
		t.Fatal(err)
	}
	if err := w.Lease(binary.BigEndian.AppendUint64(nil, id), lease); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Finish(etcddb.FinishMeta{Rev: 2, StorageVersion: "3.6.0"}); err != nil {
		t.Fatal(err)
	}
	ttl := func(what string, cli *clientv3.Client) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := cli.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if r.GrantedTTL != granted || r.TTL <= remaining-10 || r.TTL > remaining || len(r.Keys) != 1 {
			t.Fatalf("%s: lease granted %d, TTL %d, keys %q; want %d, about %d, [k]", what, r.GrantedTTL, r.TTL, r.Keys, granted, remaining)
		}
	}

	restored := filepath.Join(dir, "restored")
	if err := run([]string{"snapshot", "restore", file, "--data-dir", restored}); err != nil {
		t.Fatal(err)
	}
	s, cli := startMember(t, "r", restored, "bbolt")
	ttl("strata", cli)
	stopMember(t, s, cli)

	addrs, err := freeport.Addrs(1)
	if err != nil {
		t.Fatal(err)
	}
	peer := "http://" + addrs[0]
	etcdDir := filepath.Join(dir, "etcd")
	etcdutlRestore(t, file, "e", etcdDir, peer)
	m := startEtcd(t, "e", etcdDir, peer)
	defer m.stop()
	ttl("etcd", m.cli)
}
