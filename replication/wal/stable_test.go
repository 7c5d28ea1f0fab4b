package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Raft's keys (raft.go keyCurrentTerm, keyLastVoteTerm, keyLastVoteCand).
var (
	keyCurrentTerm  = []byte("CurrentTerm")
	keyLastVoteTerm = []byte("LastVoteTerm")
	keyLastVoteCand = []byte("LastVoteCand")
)

func TestStable(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, nil)
	defer func() { s.Close() }()

	// Missing keys: nil / 0 and no error, as raft.StableStore documents.
	if v, err := s.Get(keyLastVoteCand); v != nil || err != nil {
		t.Fatalf("Get missing = %q, %v", v, err)
	}
	if v, err := s.GetUint64(keyCurrentTerm); v != 0 || err != nil {
		t.Fatalf("GetUint64 missing = %d, %v", v, err)
	}

	check := func() {
		t.Helper()
		if v, err := s.GetUint64(keyCurrentTerm); v != 7 || err != nil {
			t.Fatalf("CurrentTerm = %d, %v", v, err)
		}
		if v, err := s.GetUint64(keyLastVoteTerm); v != 1<<63+5 || err != nil {
			t.Fatalf("LastVoteTerm = %d, %v", v, err)
		}
		if v, err := s.Get(keyLastVoteCand); string(v) != "node-2" || err != nil {
			t.Fatalf("LastVoteCand = %q, %v", v, err)
		}
		if v, err := s.Get([]byte("empty")); v == nil || len(v) != 0 || err != nil {
			t.Fatalf("empty value = %#v, %v", v, err)
		}
		if _, err := s.GetUint64(keyLastVoteCand); !errors.Is(err, ErrNotUint64) {
			t.Fatalf("GetUint64 of a string: %v", err)
		}
	}
	for i := range uint64(8) {
		if err := s.SetUint64(keyCurrentTerm, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetUint64(keyLastVoteTerm, 1<<63+5); err != nil {
		t.Fatal(err)
	}
	val := []byte("node-2")
	if err := s.Set(keyLastVoteCand, val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store must have copied it
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(keyLastVoteCand)
	got[0] = 'Y' // and must return a copy
	check()
	s.Close()
	s = mustOpen(t, dir, nil)
	check()
}

// TestStableTornTail cuts the stable file inside its last record.
func TestStableTornTail(t *testing.T) {
	src := t.TempDir()
	s := mustOpen(t, src, nil)
	s.SetUint64(keyCurrentTerm, 1)
	s.Set(keyLastVoteCand, []byte("a"))
	s.SetUint64(keyCurrentTerm, 2)
	s.Close()
	path := filepath.Join(src, stableName)
	fi, _ := os.Stat(path)
	lastLen := len(appendStable(nil, keyCurrentTerm, make([]byte, 8)))
	for cut := fi.Size() - int64(lastLen); cut < fi.Size(); cut++ {
		dir := copyDir(t, src)
		os.Truncate(filepath.Join(dir, stableName), cut)
		s := mustOpen(t, dir, nil)
		if v, _ := s.GetUint64(keyCurrentTerm); v != 1 {
			t.Fatalf("cut %d: CurrentTerm %d, want 1", cut, v)
		}
		if err := s.SetUint64(keyCurrentTerm, 3); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = mustOpen(t, dir, nil)
		if v, _ := s.GetUint64(keyCurrentTerm); v != 3 {
			t.Fatalf("cut %d: CurrentTerm %d after rewrite, want 3", cut, v)
		}
		s.Close()
	}
	// Damage to the last record is a torn write too; damage before it is not.
	for _, tc := range []struct {
		off  int64
		want error
	}{{fi.Size() - 1, nil}, {fi.Size() - int64(lastLen), nil}, {3, ErrCorrupt}} {
		dir := copyDir(t, src)
		flipByte(t, filepath.Join(dir, stableName), tc.off, 0x20)
		s, err := Open(dir, nil)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Fatalf("flip at %d: %v, want %v", tc.off, err, tc.want)
		}
		if s != nil {
			s.Close()
		}
	}
}

// TestStableCompaction checks that Open rewrites a stable file dominated by
// overwritten values.
func TestStableCompaction(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir, nil)
	for i := range uint64(600) {
		s.SetUint64(keyCurrentTerm, i)
		s.Set(keyLastVoteCand, []byte(fmt.Sprint("n", i)))
	}
	s.Close()
	before, _ := os.Stat(filepath.Join(dir, stableName))
	s = mustOpen(t, dir, nil)
	defer s.Close()
	after, _ := os.Stat(filepath.Join(dir, stableName))
	if after.Size() >= before.Size()/100 {
		t.Fatalf("stable file %d bytes after compaction, %d before", after.Size(), before.Size())
	}
	if v, _ := s.GetUint64(keyCurrentTerm); v != 599 {
		t.Fatalf("CurrentTerm %d", v)
	}
	if v, _ := s.Get(keyLastVoteCand); !bytes.Equal(v, []byte("n599")) {
		t.Fatalf("LastVoteCand %q", v)
	}
	if err := s.SetUint64(keyCurrentTerm, 600); err != nil {
		t.Fatal(err)
	}
}
