package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mkLog builds a deterministic, self-describing entry: every field follows
// from (idx, term, size), so checkLog can verify any entry read back.
func mkLog(idx, term uint64, size int) *raft.Log {
	l := &raft.Log{Index: idx, Term: term, Type: raft.LogType(idx % 6), Data: payload(idx, term, size)}
	if idx%3 == 0 {
		l.Extensions = []byte(fmt.Sprintf("ext-%d", idx))
	}
	if idx%2 == 0 {
		l.AppendedAt = time.Unix(1_700_000_000+int64(idx), int64(idx*7919)%1e9)
	}
	return l
}

func payload(idx, term uint64, size int) []byte {
	if size == 0 {
		return nil
	}
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(idx*31 + term*17 + uint64(i)*7)
	}
	return b
}

// mkLogs builds entries from..to (inclusive) with payloads of size bytes.
func mkLogs(from, to, term uint64, size int) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, mkLog(i, term, size))
	}
	return ls
}

// checkLog reports whether l is exactly mkLog(idx, term, len(l.Data)).
func checkLog(l *raft.Log, idx, term uint64) error {
	want := mkLog(idx, term, len(l.Data))
	return diffLog(l, want)
}

func diffLog(got, want *raft.Log) error {
	switch {
	case got.Index != want.Index, got.Term != want.Term, got.Type != want.Type:
		return fmt.Errorf("got (index %d, term %d, type %v), want (%d, %d, %v)",
			got.Index, got.Term, got.Type, want.Index, want.Term, want.Type)
	case !bytes.Equal(got.Data, want.Data):
		return fmt.Errorf("entry %d: data differs (%d vs %d bytes)", got.Index, len(got.Data), len(want.Data))
	case !bytes.Equal(got.Extensions, want.Extensions):
		return fmt.Errorf("entry %d: extensions %q, want %q", got.Index, got.Extensions, want.Extensions)
	case !got.AppendedAt.Equal(want.AppendedAt):
		return fmt.Errorf("entry %d: appended at %v, want %v", got.Index, got.AppendedAt, want.AppendedAt)
	}
	return nil
}

func mustOpen(t testing.TB, dir string, opts *Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	return s
}

func mustStore(t testing.TB, s raft.LogStore, logs []*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs [%d, %d]: %v", logs[0].Index, logs[len(logs)-1].Index, err)
	}
}

func mustDelete(t testing.TB, s raft.LogStore, min, max uint64) {
	t.Helper()
	if err := s.DeleteRange(min, max); err != nil {
		t.Fatalf("DeleteRange(%d, %d): %v", min, max, err)
	}
}

func bounds(t testing.TB, s raft.LogStore) (first, last uint64) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err = s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return first, last
}

func wantBounds(t testing.TB, s raft.LogStore, first, last uint64) {
	t.Helper()
	if f, l := bounds(t, s); f != first || l != last {
		t.Fatalf("bounds [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

// segmentFiles lists the segment files in dir in index order.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
