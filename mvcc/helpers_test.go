package mvcc

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/strata-kv/strata/backends"
	"github.com/strata-kv/strata/engine"
)

// testEngines returns the real engines the tests run on: every engine of
// backends.Registry, or those named in STRATA_MVCC_ENGINES (comma
// separated).
func testEngines(t testing.TB) []engine.Engine {
	r := backends.Registry()
	names := r.Names()
	if env := os.Getenv("STRATA_MVCC_ENGINES"); env != "" {
		names = slices.DeleteFunc(strings.Split(env, ","), func(s string) bool { return s == "" })
	}
	var es []engine.Engine
	for _, n := range names {
		e, err := r.Lookup(n)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	return es
}

// forEachEngine runs f as a subtest per engine.
func forEachEngine(t *testing.T, f func(t *testing.T, e engine.Engine)) {
	for _, e := range testEngines(t) {
		t.Run(e.Name, func(t *testing.T) { f(t, e) })
	}
}

// openBackend opens e in dir and closes it at the end of the test.
func openBackend(t testing.TB, e engine.Engine, dir string) engine.Backend {
	t.Helper()
	be, err := e.Open(dir, engine.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", e.Name, err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// testOptions are store options for tests: compaction without pauses.
func testOptions() *Options {
	return &Options{CompactionSleepInterval: -1}
}

// newTestStore opens a store on a fresh backend of e.
func newTestStore(t testing.TB, e engine.Engine, opts *Options) (*Store, engine.Backend) {
	t.Helper()
	be := openBackend(t, e, t.TempDir())
	if opts == nil {
		opts = testOptions()
	}
	s, err := Open(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, be
}

// wipe deletes everything in be.
func wipe(t testing.TB, be engine.Backend) {
	t.Helper()
	var b engine.Batch
	b.DeleteRange([]byte{0}, []byte{0xff, 0xff, 0xff, 0xff})
	if err := be.Commit(&b, engine.NoSync); err != nil {
		t.Fatal(err)
	}
}

type engineT = engine.Engine

// openBackendNoCleanup opens e in dir; the caller closes it.
func openBackendNoCleanup(t testing.TB, e engine.Engine, dir string) engine.Backend {
	t.Helper()
	be, err := e.Open(dir, engine.Options{})
	if err != nil {
		t.Fatalf("open %s: %v", e.Name, err)
	}
	return be
}

type (
	engineBackend     = engine.Backend
	engineIterOptions = engine.IterOptions
)
