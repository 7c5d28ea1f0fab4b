package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-kv/strata/internal/freeport"
)

// The manual run of README's "Migrating from etcd": a real etcd loaded
// with 1,000,000 keys and their history (about 300 MB), saved with the
// real etcdctl, restored into Strata on every engine, served by a strata
// process and compared with what etcd answered, exported back, restored
// with the real etcdutl and served by the real etcd, compared again. The
// restores and exports are timed beside etcdutl's restore of the same file.
//
//	STRATA_MIGRATE_LARGE=1 STRATA_ETCD=etcd STRATA_ETCDCTL=etcdctl STRATA_ETCDUTL=etcdutl \
//	  go test -run TestMigrateLarge -timeout 2h -v ./cmd/strata
//
// STRATA_MIGRATE_LARGE_KEYS changes the number of keys (the history
// scales with it); STRATA_MIGRATE_LARGE_DIR keeps the loaded snapshot and
// etcd's answers there, for the next run to reuse; STRATA_MIGRATE_LARGE_ENGINES
// (comma separated) picks engines.

// largeAnswers is what a member answers about a large keyspace, as
// digests: every key at the current revision, every key at the compact
// revision and at a revision between it and the end, counts at more
// revisions, the hashes, a watch resumed from a revision etcd issued and
// the leases.
type largeAnswers struct {
	Rev, CompactRev int64
	Hash            uint32
	HashAt          map[int64]uint32
	Ranges          map[int64]string // revision -> count and sha256 of every key-value
	Counts          map[int64]int64
	WatchFrom       int64
	Watch           string // events and sha256 of the events from WatchFrom with prev_kv
	Leases          string // count and sha256 of the leases, their granted TTLs and keys
}

// largeSet describes the data set built by loadLarge.
type largeSet struct {
	Keys       int
	CreatedRev int64 // the revision after the creates
	Snapshot   string
	SnapSize   int64
	LoadTime   time.Duration
	// Live is what the loaded etcd answered, Want what etcd answers once
	// its snapshot is restored by etcdutl.
	Live, Want largeAnswers
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 {
		t.Fatalf("%s=%q: want a number of at least 1000", name, v)
	}
	return n
}

func TestMigrateLarge(t *testing.T) {
	if os.Getenv("STRATA_MIGRATE_LARGE") != "1" {
		t.Skip("the manual migration run: set STRATA_MIGRATE_LARGE=1 (and STRATA_ETCD, STRATA_ETCDCTL, STRATA_ETCDUTL)")
	}
	bins := map[string]string{}
	for _, name := range []string{"STRATA_ETCD", "STRATA_ETCDCTL", "STRATA_ETCDUTL"} {
		if bins[name] = os.Getenv(name); bins[name] == "" {
			t.Fatalf("%s must name the real binary", name)
		}
	}
	keys := envInt(t, "STRATA_MIGRATE_LARGE_KEYS", 1000000)
	engines := []string{"bbolt", "pebble", "badger"}
	if v := os.Getenv("STRATA_MIGRATE_LARGE_ENGINES"); v != "" {
		engines = strings.Split(v, ",")
	}
	work := os.Getenv("STRATA_MIGRATE_LARGE_DIR")
	if work == "" {
		work = t.TempDir()
	}
	set := loadLargeCached(t, work, keys, bins)
	t.Logf("data set: %d keys, revision %d, compacted at %d, snapshot %d bytes (loaded in %v)",
		set.Keys, set.Want.Rev, set.Want.CompactRev, set.SnapSize, set.LoadTime.Round(time.Second))

	run := t.TempDir()
	var report []string
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			// etcdutl's restore of the same file just before, for the ratio.
			utlDir := filepath.Join(run, "etcdutl-"+eng)
			utlTime := timeCmd(t, bins["STRATA_ETCDUTL"], "snapshot", "restore", set.Snapshot, "--name", "e",
				"--data-dir", utlDir, "--initial-cluster", "e=http://127.0.0.1:2380",
				"--initial-advertise-peer-urls", "http://127.0.0.1:2380")
			utlDB := fileSize(t, filepath.Join(utlDir, "member", "snap", "db"))
			os.RemoveAll(utlDir)

			dir := filepath.Join(run, eng+".strata")
			defer os.RemoveAll(dir)
			restoreTime := timeCmd(t, os.Args[0], "snapshot", "restore", set.Snapshot, "--name", "s",
				"--data-dir", dir, "--backend", eng)
			size := dirSize(t, dir)

			p, cli := startLargeStrata(t, dir, eng)
			compareLarge(t, "strata on "+eng, captureLarge(t, cli, set), set.Want)
			cli.Close()
			p.stop(t)

			out := filepath.Join(run, eng+".export.db")
			defer os.Remove(out)
			exportTime := timeCmd(t, os.Args[0], "snapshot", "export", "--data-dir", dir, out)
			outSize := fileSize(t, out)
			os.RemoveAll(dir)

			ecli := startRealEtcd(t, bins["STRATA_ETCD"], out, nil)
			compareLarge(t, "etcd from the "+eng+" export", captureLarge(t, ecli, set), set.Want)

			line := fmt.Sprintf("%-6s restore %6.1fs (etcdutl %5.1fs, %.2fx), data dir %4d MB on disk (etcdutl's db %4d MB); export %6.1fs, file %4d MB (etcd's snapshot %4d MB)",
				eng, restoreTime.Seconds(), utlTime.Seconds(), restoreTime.Seconds()/utlTime.Seconds(),
				size>>20, utlDB>>20, exportTime.Seconds(), outSize>>20, set.SnapSize>>20)
			t.Log(line)
			report = append(report, line)
		})
	}
	t.Logf("summary (%d keys, %d revisions of history, compacted at %d):\n%s", set.Keys, set.Want.Rev, set.Want.CompactRev, strings.Join(report, "\n"))
}

// loadLargeCached returns the data set kept in work, or builds it there.
func loadLargeCached(t *testing.T, work string, keys int, bins map[string]string) largeSet {
	t.Helper()
	meta := filepath.Join(work, fmt.Sprintf("set-%d.json", keys))
	if b, err := os.ReadFile(meta); err == nil {
		var set largeSet
		if err := json.Unmarshal(b, &set); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(set.Snapshot); err == nil {
			return set
		}
	}
	set := loadLarge(t, work, keys, bins)
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return set
}

// largeKey is the name of key i, Kubernetes style.
func largeKey(i int) string {
	return fmt.Sprintf("/registry/pods/ns-%03d/pod-%07d", i%1000, i)
}

// largeValue is a 128-byte value that does not compress (Kubernetes
// stores protobufs; a compressible value would flatter pebble and badger).
func largeValue(r *rand.Rand) string {
	b := make([]byte, 128)
	for i := 0; i < len(b); i += 8 {
		u := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(u >> (8 * j))
		}
	}
	return string(b)
}

// loadLarge starts the real etcd in work and writes into it: keys creates,
// a quarter of them overwritten, a compaction halfway through the
// overwrites, 1000 leases with ten keys each, and 2% of the keys deleted;
// then saves a snapshot with the real etcdctl and captures etcd's answers.
func loadLarge(t *testing.T, work string, keys int, bins map[string]string) largeSet {
	t.Helper()
	start := time.Now()
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, "etcd")
	os.RemoveAll(dir)
	client, peer := "http://"+addrs[0], "http://"+addrs[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// No fsync while loading: it only makes the load faster; the snapshot
	// is the same.
	cmd := exec.CommandContext(ctx, bins["STRATA_ETCD"], "--name", "load", "--data-dir", dir, "--log-level", "error",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "load="+peer,
		"--quota-backend-bytes", strconv.Itoa(8<<30), "--unsafe-no-fsync")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	cli := waitServing(t, client)
	defer cli.Close()

	put := func(n int, key func(i int) string, opts func(i int) []clientv3.OpOption) {
		t.Helper()
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), uint64(n)))
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					var o []clientv3.OpOption
					if opts != nil {
						o = opts(i)
					}
					if _, err := cli.Put(ctx, key(i), largeValue(r), o...); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	put(keys, largeKey, nil)
	resp, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	created := resp.Header.Revision
	t.Logf("created %d keys at revision %d in %v", keys, created, time.Since(start).Round(time.Second))
	over := keys / 4
	put(over/2, func(i int) string { return largeKey(i * 4) }, nil)
	resp, err = cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	put(over-over/2, func(i int) string { return largeKey((i + over/2) * 4) }, nil)
	const leases, perLease = 1000, 10
	ids := make([]clientv3.LeaseID, leases)
	for i := range ids {
		l, err := cli.Grant(ctx, int64(3600+i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = l.ID
	}
	put(leases*perLease, func(i int) string { return fmt.Sprintf("/registry/events/ns-%03d/event-%07d", i%1000, i) },
		func(i int) []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithLease(ids[i/perLease])} })
	for i := range keys / 50 {
		if _, err := cli.Delete(ctx, largeKey(i*50+1)); err != nil {
			t.Fatal(err)
		}
	}
	set := largeSet{Keys: keys, CreatedRev: created}
	set.Live = captureLarge(t, cli, set)
	set.Snapshot = filepath.Join(work, fmt.Sprintf("etcd-%d.snapshot", keys))
	os.Remove(set.Snapshot)
	out, err := exec.Command(bins["STRATA_ETCDCTL"], "--endpoints", client, "snapshot", "save", set.Snapshot).CombinedOutput()
	if err != nil {
		t.Fatalf("etcdctl snapshot save: %v\n%s", err, out)
	}
	set.SnapSize = fileSize(t, set.Snapshot)
	set.LoadTime = time.Since(start)
	cancel()
	cmd.Wait()
	os.RemoveAll(dir)
	// The reference is etcd serving its own snapshot, restored by etcdutl.
	// It answers as the member it was saved from did, but for HashKV at
	// the compact revision: etcd's index after a restore keeps another set
	// of revisions at it than the member's index after its compaction did.
	t.Run("etcd-restored", func(t *testing.T) {
		cli := startRealEtcd(t, bins["STRATA_ETCD"], set.Snapshot, nil)
		set.Want = captureLarge(t, cli, set)
	})
	if set.Want.Rev == 0 {
		t.FailNow()
	}
	t.Logf("HashKV at the compact revision %d: %x from the loaded etcd, %x from etcd restored from its snapshot",
		set.Live.CompactRev, set.Live.HashAt[set.Live.CompactRev], set.Want.HashAt[set.Want.CompactRev])
	set.Live.HashAt[set.Live.CompactRev] = set.Want.HashAt[set.Want.CompactRev]
	compareLarge(t, "etcd restored from its snapshot (but for HashKV at the compact revision)", set.Want, set.Live)
	return set
}

// waitServing returns a client of endpoint once it answers a read.
func waitServing(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop(), MaxCallRecvMsgSize: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.Get(ctx, "x")
		cancel()
		if err == nil {
			return cli
		}
		if time.Now().After(deadline) {
			cli.Close()
			t.Fatalf("%s does not serve: %v", endpoint, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startLargeStrata starts a strata process on the restored dir.
func startLargeStrata(t *testing.T, dir, eng string) (*proc, *clientv3.Client) {
	t.Helper()
	addrs, err := freeport.Addrs(2)
	if err != nil {
		t.Fatal(err)
	}
	client, peer := "http://"+addrs[0], "http://"+addrs[1]
	p := startProc(t, "--name", "s", "--data-dir", dir, "--backend", eng,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "s="+peer)
	return p, waitServing(t, client)
}

// captureLarge reads what cli's member answers (see largeAnswers).
func captureLarge(t *testing.T, cli *clientv3.Client, set largeSet) largeAnswers {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	ep := cli.Endpoints()[0]
	h, err := cli.HashKV(ctx, ep, 0)
	if err != nil {
		t.Fatal(err)
	}
	a := largeAnswers{Rev: h.Header.Revision, CompactRev: h.CompactRevision, Hash: h.Hash,
		HashAt: map[int64]uint32{}, Ranges: map[int64]string{}, Counts: map[int64]int64{}}
	mid := (a.CompactRev + a.Rev) / 2
	for _, rev := range []int64{a.CompactRev, mid, a.Rev - 1} {
		h, err := cli.HashKV(ctx, ep, rev)
		if err != nil {
			t.Fatal(err)
		}
		a.HashAt[rev] = h.Hash
	}
	for _, rev := range []int64{a.Rev, mid, a.CompactRev} {
		a.Ranges[rev] = rangeDigest(t, ctx, cli, rev)
	}
	for _, rev := range []int64{a.CompactRev - 1, a.CompactRev, set.CreatedRev, a.Rev - 10000, a.Rev, a.Rev + 1} {
		resp, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
		if err != nil {
			a.Counts[rev] = -1 // compacted or future
			continue
		}
		a.Counts[rev] = resp.Count
	}
	// A Kubernetes watch resumes from a resourceVersion etcd issued.
	a.WatchFrom = a.Rev - min(20000, (a.Rev-a.CompactRev)/2)
	wctx, wcancel := context.WithCancel(ctx)
	sum := sha256.New()
	events := 0
	for resp := range cli.Watch(wctx, "/registry/", clientv3.WithPrefix(), clientv3.WithRev(a.WatchFrom), clientv3.WithPrevKV()) {
		if err := resp.Err(); err != nil {
			t.Fatalf("watch from %d: %v", a.WatchFrom, err)
		}
		done := false
		for _, ev := range resp.Events {
			fmt.Fprintf(sum, "%s %s", ev.Type, kvString(ev.Kv))
			if ev.PrevKv != nil {
				fmt.Fprintf(sum, " prev %s", kvString(ev.PrevKv))
			}
			events++
			done = ev.Kv.ModRevision >= a.Rev
		}
		if done {
			break
		}
	}
	wcancel()
	a.Watch = fmt.Sprintf("%d events %x", events, sum.Sum(nil))
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
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
		lines = append(lines, fmt.Sprintf("%x granted %d keys %q", l.ID, ttl.GrantedTTL, keys))
	}
	slices.Sort(lines)
	a.Leases = fmt.Sprintf("%d leases %x", len(lines), sha256.Sum256([]byte(strings.Join(lines, "\n"))))
	return a
}

// rangeDigest reads every key at rev, in pages, and digests them.
func rangeDigest(t *testing.T, ctx context.Context, cli *clientv3.Client, rev int64) string {
	t.Helper()
	sum := sha256.New()
	n := 0
	from := "\x00"
	for {
		resp, err := cli.Get(ctx, from, clientv3.WithFromKey(), clientv3.WithRev(rev), clientv3.WithLimit(10000))
		if err != nil {
			return "error: " + err.Error()
		}
		for _, kv := range resp.Kvs {
			fmt.Fprintln(sum, kvString(kv))
			n++
		}
		if !resp.More {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	return fmt.Sprintf("%d keys %s", n, hex.EncodeToString(sum.Sum(nil)))
}

func compareLarge(t *testing.T, what string, got, want largeAnswers) {
	t.Helper()
	g, _ := json.MarshalIndent(got, "", "  ")
	w, _ := json.MarshalIndent(want, "", "  ")
	if string(g) != string(w) {
		gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
		var diff []string
		for i := range max(len(gl), len(wl)) {
			var a, b string
			if i < len(gl) {
				a = gl[i]
			}
			if i < len(wl) {
				b = wl[i]
			}
			if a != b {
				diff = append(diff, fmt.Sprintf("got  %s\nwant %s", strings.TrimSpace(a), strings.TrimSpace(b)))
			}
		}
		t.Errorf("%s does not answer as etcd did:\n%s", what, strings.Join(diff, "\n"))
		return
	}
	t.Logf("%s answers as etcd did: revision %d, compacted at %d, hash %x, %s, watch from %d: %s",
		what, got.Rev, got.CompactRev, got.Hash, got.Ranges[got.Rev], got.WatchFrom, got.Watch)
}

// timeCmd runs a command and returns how long it took.
func timeCmd(t *testing.T, bin string, args ...string) time.Duration {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), runAsMainEnv+"=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", filepath.Base(bin), args, err, out)
	}
	t.Logf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args[:2], " "), d.Round(time.Millisecond), strings.TrimSpace(string(out)))
	return d
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// dirSize is the disk space the files under dir take (allocated blocks,
// as du counts them: a preallocated but unwritten file counts little).
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		} else {
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
