package pebble

import (
	"testing"

	"github.com/strata-kv/strata/engine"
)

// TestNoSync checks Options.NoSync (--unsafe-no-fsync, through
// engine.Options): a commit asking for Sync is applied without waiting
// for the WAL's fsync, and what was committed is read back after a reopen.
func TestNoSync(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		dir := t.TempDir()
		be, err := Engine().Open(dir, engine.Options{NoSync: noSync})
		if err != nil {
			t.Fatal(err)
		}
		d := be.(*DB)
		if got := d.syncs(engine.Sync); got == noSync {
			t.Errorf("NoSync %v: a Sync commit waits for the fsync: %v, want %v", noSync, got, !noSync)
		}
		if d.syncs(engine.NoSync) {
			t.Errorf("NoSync %v: a NoSync commit waits for the fsync", noSync)
		}
		var b engine.Batch
		b.Set([]byte("k"), []byte("v"))
		if err := d.Commit(&b, engine.Sync); err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d, err = Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := d.NewSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get([]byte("k")); err != nil || string(v) != "v" {
			t.Errorf("NoSync %v: reopened k = %q, %v; want v", noSync, v, err)
		}
		s.Close()
		d.Close()
	}
}
