package engine

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrLoadOrder is returned by Loader.Set for a key that is not greater
// than the key set before it.
var ErrLoadOrder = errors.New("engine: bulk load keys out of order")

// BulkLoader is implemented by engines that can fill an empty backend
// faster than batches of commits do, from keys given in increasing order:
// a restore from another store's files. The engine may write its files
// directly (badger's sorted tables) or in fewer, larger transactions
// (bbolt).
type BulkLoader interface {
	// NewLoader starts a bulk load. The backend must be empty, and take
	// no commits and no snapshots until the load is finished or aborted.
	NewLoader() (Loader, error)
}

// A Loader writes keys in increasing order into an empty backend. Only
// one goroutine may use it.
type Loader interface {
	// Set adds key with value. key must be greater than every key set
	// before (else ErrLoadOrder). The slices may be reused when Set
	// returns.
	Set(key, value []byte) error
	// Finish makes every key set durable and visible to new snapshots.
	Finish() error
	// Abort abandons the load: what was set may be partly in the
	// backend, which the caller discards.
	Abort()
}

// CheckLoadKey validates a key given to Loader.Set after prev (nil for the
// first key), as every engine's loader does.
func CheckLoadKey(prev, key, value []byte) error {
	if err := checkKV(key, value); err != nil {
		return err
	}
	if prev != nil && bytes.Compare(prev, key) >= 0 {
		return fmt.Errorf("%w: %q after %q", ErrLoadOrder, key, prev)
	}
	return nil
}
