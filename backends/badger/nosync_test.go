package badger

import (
	"testing"

	"github.com/strata-kv/strata/engine"
)

// TestNoSync checks Options.NoSync (--unsafe-no-fsync, through
// engine.Options): a synced commit and Sync run no sync round (the round
// records the directory's entries, so none is recorded), and what was
// committed is read back after a reopen.
func TestNoSync(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		dir := t.TempDir()
		be, err := Engine().Open(dir, engine.Options{NoSync: noSync})
		if err != nil {
			t.Fatal(err)
		}
		d := be.(*DB)
		var b engine.Batch
		b.Set([]byte("k"), []byte("v"))
		if err := d.Commit(&b, engine.Sync); err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
		if ran := d.durable.names != nil; ran == noSync {
			t.Errorf("NoSync %v: a sync round ran: %v, want %v", noSync, ran, !noSync)
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
