package badger_test

import (
	"errors"
	"testing"

	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/engine"
)

// TestMlockRefused: badger maps no data file, so engine.Options.Mlock
// (etcd's --memory-mlock) is refused rather than ignored.
func TestMlockRefused(t *testing.T) {
	b, err := badger.Engine().Open(t.TempDir(), engine.Options{Mlock: true})
	if !errors.Is(err, engine.ErrMlockUnsupported) {
		if err == nil {
			b.Close()
		}
		t.Fatalf("open with Mlock: %v, want %v", err, engine.ErrMlockUnsupported)
	}
}
