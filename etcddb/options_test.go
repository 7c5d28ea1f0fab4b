package etcddb

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestOpenOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts OpenOptions
		ok   bool
	}{
		{"defaults", OpenOptions{}, true},
		{"skip the hash check", OpenOptions{SkipHashCheck: true, LockTimeout: time.Millisecond}, true},
		{"negative lock timeout", OpenOptions{LockTimeout: -time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.EnsureDefaults()
			err := o.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Validate: %v, want ErrInvalidOptions", err)
			}
		})
	}
	// Open refuses them before it looks at the file.
	missing := filepath.Join(t.TempDir(), "db")
	if _, err := Open(missing, OpenOptions{LockTimeout: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Open with LockTimeout -1: %v, want ErrInvalidOptions", err)
	}
}
