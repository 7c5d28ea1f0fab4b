// Package optionstest checks options types that follow Strata's options
// convention (see the README): EnsureDefaults fills the unset fields,
// then Validate reports what cannot work with an error wrapping the
// package's sentinel.
package optionstest

import (
	"errors"
	"testing"
)

// Case is one row of a Validate table.
type Case[T any] struct {
	Name string
	Opts T
	// OK is whether Validate accepts Opts once their defaults are filled in.
	OK bool
}

// Validate runs each case as a subtest: it fills in the defaults of a copy
// of the case's options, validates them and checks that valid options
// pass and invalid ones fail with an error wrapping invalid.
func Validate[T any, P interface {
	*T
	EnsureDefaults()
	Validate() error
}](t *testing.T, invalid error, cases []Case[T]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			opts := tc.Opts
			o := P(&opts)
			o.EnsureDefaults()
			err := o.Validate()
			switch {
			case tc.OK && err != nil:
				t.Fatalf("Validate: %v", err)
			case !tc.OK && !errors.Is(err, invalid):
				t.Fatalf("Validate: %v, want an error wrapping %q", err, invalid)
			}
		})
	}
}
