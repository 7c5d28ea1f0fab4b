package backends_test

import (
	"testing"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
)

// TestRegistry opens every registered engine by name and round-trips a key.
func TestRegistry(t *testing.T) {
	r := backends.Registry()
	if got := r.Names(); len(got) != 3 || got[0] != "badger" || got[1] != "bbolt" || got[2] != "pebble" {
		t.Fatalf("Names = %v, want [badger bbolt pebble]", got)
	}
	if !r.Has(backends.Default) {
		t.Fatalf("default engine %q is not registered", backends.Default)
	}
	for _, name := range r.Names() {
		t.Run(name, func(t *testing.T) {
			b, err := r.Open(name, t.TempDir(), engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			var batch engine.Batch
			batch.Set([]byte("k"), []byte(name))
			if err := b.Commit(&batch, engine.Sync); err != nil {
				t.Fatal(err)
			}
			s, err := b.NewSnapshot()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if v, err := s.Get([]byte("k")); err != nil || string(v) != name {
				t.Fatalf("Get = %q, %v", v, err)
			}
		})
	}
}
