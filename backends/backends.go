// Package backends gathers the storage engines Strata ships into one
// engine.Registry. It is the only package that imports every engine; the
// server and tools select one by name through it (--backend).
package backends

import (
	"github.com/strata-kv/strata/backends/badger"
	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/backends/pebble"
	"github.com/strata-kv/strata/engine"
)

// Default is the engine used when none is named.
const Default = bbolt.Name

// Registry returns a registry holding every engine Strata ships: bbolt,
// pebble and badger.
func Registry() *engine.Registry {
	return engine.NewRegistry(bbolt.Engine(), pebble.Engine(), badger.Engine())
}
