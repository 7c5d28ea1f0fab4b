package wal

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"golang.org/x/sys/unix"
)

// benchStores are compared in the same run; compare with
// benchstat -col /store.
var benchStores = []string{"ours", "boltdb", "raftwal"}

type closingLogStore interface {
	raft.LogStore
	Close() error
}

func openBenchStore(b *testing.B, kind string) closingLogStore {
	b.Helper()
	dir := b.TempDir()
	var (
		s   closingLogStore
		err error
	)
	switch kind {
	case "ours":
		s, err = Open(dir, nil)
	case "boltdb":
		s, err = raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	case "raftwal":
		s, err = raftwal.Open(dir)
	}
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// settle flushes dirty data system-wide before a timed loop, so writeback
// left by the previous sub-benchmark (such as removing its directory) is
// not charged to whichever store happens to run next.
func settle() { unix.Sync() }

// benchBatch returns n reusable entries with size-byte payloads; the caller
// sets their indexes.
func benchBatch(n, size int) []*raft.Log {
	r := rand.New(rand.NewPCG(1, 1))
	now := time.Now()
	logs := make([]*raft.Log, n)
	for i := range logs {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(r.Uint32())
		}
		logs[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: now}
	}
	return logs
}

// BenchmarkStoreLogs appends batches the way raft does: one StoreLogs call,
// durable (fsynced) on return, per batch.
func BenchmarkStoreLogs(b *testing.B) {
	for _, size := range []int{128, 1024} {
		for _, batch := range []int{1, 16, 64} {
			for _, kind := range benchStores {
				b.Run(fmt.Sprintf("size=%d/batch=%d/store=%s", size, batch, kind), func(b *testing.B) {
					s := openBenchStore(b, kind)
					defer s.Close()
					logs := benchBatch(batch, size)
					next := uint64(1)
					b.SetBytes(int64(batch * size))
					b.ReportAllocs()
					settle()
					for b.Loop() {
						for _, l := range logs {
							l.Index = next
							next++
						}
						if err := s.StoreLogs(logs); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(next-1)/b.Elapsed().Seconds(), "entries/s")
				})
			}
		}
	}
}

// BenchmarkGetLog reads random entries of a 20,000-entry log.
func BenchmarkGetLog(b *testing.B) {
	const entries = 20_000
	for _, size := range []int{128, 1024} {
		for _, kind := range benchStores {
			// any: random entries of the whole log; recent: the last 128,
			// as raft's replication and a follower's apply read them.
			for _, span := range []string{"any", "recent"} {
				b.Run(fmt.Sprintf("size=%d/store=%s/read=%s", size, kind, span), func(b *testing.B) {
					s := openBenchStore(b, kind)
					defer s.Close()
					for next := uint64(1); next <= entries; {
						// Fresh entries per batch: a store may keep them.
						logs := benchBatch(64, size)
						for _, l := range logs {
							l.Index = next
							next++
						}
						if err := s.StoreLogs(logs); err != nil {
							b.Fatal(err)
						}
					}
					lo, n := uint64(1), uint64(entries-64)
					if span == "recent" {
						lo, n = entries-127, 128
					}
					r := rand.New(rand.NewPCG(2, 2))
					var l raft.Log
					b.ReportAllocs()
					settle()
					for b.Loop() {
						if err := s.GetLog(lo+r.Uint64N(n), &l); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
