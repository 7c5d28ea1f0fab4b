package etcddb

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-kv/strata/internal/optionstest"
)

func TestOpenOptionsValidate(t *testing.T) {
	optionstest.Validate(t, ErrInvalidOptions, []optionstest.Case[OpenOptions]{
		{Name: "defaults", Opts: OpenOptions{}, OK: true},
		{Name: "skip the hash check", Opts: OpenOptions{SkipHashCheck: true, LockTimeout: time.Millisecond}, OK: true},
		{Name: "negative lock timeout", Opts: OpenOptions{LockTimeout: -time.Second}},
	})
	// Open refuses them before it looks at the file.
	missing := filepath.Join(t.TempDir(), "db")
	if _, err := Open(missing, OpenOptions{LockTimeout: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Open with LockTimeout -1: %v, want ErrInvalidOptions", err)
	}
}
