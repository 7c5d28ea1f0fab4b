package server_test

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/server"
)

// TestSizeInUse shows, on each engine through a running member, what
// etcd_mvcc_db_total_size_in_use_in_bytes (and Status's dbSizeInUse)
// means (README: "Size in use"): 4 MiB written, 90% of it deleted and
// compacted away. On bbolt the figure is etcd's own, the file's size
// minus its free pages, so the freed pages show at once; on pebble and
// badger it is the bytes of the records the store keeps, so it falls to
// the 10% left (plus a few dozen bytes of revisions per key) while the
// deleted data still takes its space on disk, and a restart gives the
// same figure. On every engine the figure never exceeds the size, Status
// and /metrics agree, and a defragmentation shrinks the size.
func TestSizeInUse(t *testing.T) {
	for _, eng := range engines() {
		t.Run(eng.Name, func(t *testing.T) {
			c := newCluster(t, 1, eng, nil)
			cli := c.client()
			ctx := ctxT(t)
			val := make([]byte, 1024)
			var ops []clientv3.Op
			flush := func() int64 {
				resp, err := cli.Txn(ctx).Then(ops...).Commit()
				if err != nil {
					t.Fatal(err)
				}
				ops = ops[:0]
				return resp.Header.Revision
			}
			for i := range 4096 {
				rand.Read(val)
				if ops = append(ops, clientv3.OpPut(fmt.Sprintf("k%05d", i), string(val))); len(ops) == 64 {
					flush()
				}
			}
			var rev int64
			for i := range 4096 {
				if i%10 == 0 {
					continue
				}
				if ops = append(ops, clientv3.OpDelete(fmt.Sprintf("k%05d", i))); len(ops) == 100 {
					rev = flush()
				}
			}
			if len(ops) > 0 {
				rev = flush()
			}
			if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
				t.Fatal(err)
			}
			// The figures are refreshed every 500ms.
			time.Sleep(1200 * time.Millisecond)
			url := c.members[0].ClientURLs()[0] + "/metrics"
			gauge := func(name string) int64 {
				f := scrape(t, url)[name]
				if f == nil || len(f.Metric) != 1 {
					t.Fatalf("%s: %v", name, f)
				}
				return int64(f.Metric[0].GetGauge().GetValue())
			}
			// Status and /metrics read the same cached figures; an engine's
			// background work may change them between the two reads, so
			// take a moment when both agree.
			var size, inUse int64
			var st *clientv3.StatusResponse
			for try := 0; ; try++ {
				size, inUse = gauge("etcd_mvcc_db_total_size_in_bytes"), gauge("etcd_mvcc_db_total_size_in_use_in_bytes")
				var err error
				if st, err = cli.Status(ctx, c.endpoint(0)); err != nil {
					t.Fatal(err)
				}
				if st.DbSize == size && st.DbSizeInUse == inUse {
					break
				}
				if try == 10 {
					t.Fatalf("status says size %d, in use %d; /metrics %d, %d", st.DbSize, st.DbSizeInUse, size, inUse)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("%s after deleting 90%% and compacting: size %d, in use %d (%.0f%%); status %d/%d",
				eng.Name, size, inUse, 100*float64(inUse)/float64(size), st.DbSize, st.DbSizeInUse)
			if inUse <= 0 || inUse > size {
				t.Errorf("in use %d, size %d: want 0 < in use <= size", inUse, size)
			}
			if inUse > size/2 {
				t.Errorf("in use %d of %d after 90%% of the data was freed", inUse, size)
			}
			if eng.Name != "bbolt" {
				// 410 keys of 6 bytes with 1 KiB values are left; a record
				// adds its revision key and fields (48 bytes at most).
				const kept = 4096 / 10
				left := int64(kept * (6 + 1024))
				if inUse < left || inUse > left+48*kept {
					t.Errorf("in use %d with %d bytes of keys and values left, want %d to %d", inUse, left, left, left+48*kept)
				}
				if size < 4<<20 {
					t.Errorf("size %d: the deleted 4 MiB are no longer on disk before a defragmentation", size)
				}
				if err := c.members[0].Close(); err != nil {
					t.Fatal(err)
				}
				c.restartAt(0, c.cfgs[0].ListenPeerURLs[0])
				st, err := c.client().Status(ctx, c.endpoint(0))
				if err != nil {
					t.Fatal(err)
				}
				if st.DbSizeInUse != inUse {
					t.Errorf("restarted: in use %d, before %d", st.DbSizeInUse, inUse)
				}
				cli = c.client()
				url = c.members[0].ClientURLs()[0] + "/metrics"
			}
			if _, err := cli.Defragment(ctx, c.endpoint(0)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1200 * time.Millisecond)
			after, afterInUse := gauge("etcd_mvcc_db_total_size_in_bytes"), gauge("etcd_mvcc_db_total_size_in_use_in_bytes")
			t.Logf("%s after defragmenting: size %d, in use %d", eng.Name, after, afterInUse)
			if after >= size || afterInUse > after {
				t.Errorf("after defragmenting: size %d (before %d), in use %d", after, size, afterInUse)
			}
		})
	}
}

// TestBootstrapDefrag restarts a bbolt member whose file is mostly free
// pages with BootstrapDefragThresholdMegabytes (etcd's
// --bootstrap-defrag-threshold-megabytes): above the threshold it skips,
// with etcd's "Skipping defragmentation" line; at 1 MiB its file is
// defragmented before it serves, and its data is intact.
func TestBootstrapDefrag(t *testing.T) {
	logs := make([]*syncBuffer, 1)
	c := newCluster(t, 1, bbolt.Engine(), func(cfg *server.Config) {
		logs[0] = &syncBuffer{}
		cfg.Logger = slog.New(slog.NewJSONHandler(logs[0], nil))
	})
	cli := c.client()
	ctx := ctxT(t)
	val := strings.Repeat("v", 1024)
	var ops []clientv3.Op
	for i := range 4096 {
		if ops = append(ops, clientv3.OpPut(fmt.Sprintf("k%05d", i), val)); len(ops) == 64 {
			if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				t.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	resp, err := cli.Delete(ctx, "k0", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "kept", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	restart := func(mb uint) (size int64, log string) {
		t.Helper()
		if err := c.members[0].Close(); err != nil {
			t.Fatal(err)
		}
		cfg := c.cfgs[0]
		cfg.BootstrapDefragThresholdMegabytes = mb
		buf := &syncBuffer{}
		cfg.Logger = slog.New(slog.NewJSONHandler(buf, nil))
		m, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.members[0] = m
		<-m.ReadyNotify()
		st, err := c.client().Status(ctx, m.ClientURLs()[0])
		if err != nil {
			t.Fatal(err)
		}
		return st.DbSize, buf.String()
	}
	before, log := restart(1 << 20)
	if !strings.Contains(log, `"msg":"Skipping defragmentation"`) || !strings.Contains(log, `"bootstrap-defrag-threshold-bytes":1099511627776`) {
		t.Errorf("threshold not reached: no skipping line:\n%s", log)
	}
	after, log := restart(1)
	if !strings.Contains(log, `"msg":"finished defragmenting directory"`) {
		t.Errorf("no defragmentation line:\n%s", log)
	}
	t.Logf("size %d before, %d after the defragmentation at start", before, after)
	if after >= before/2 {
		t.Errorf("size %d after the defragmentation at start, %d before", after, before)
	}
	got, err := c.client().Get(ctx, "kept")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "1" {
		t.Fatalf("kept: %v %v", got, err)
	}
}
