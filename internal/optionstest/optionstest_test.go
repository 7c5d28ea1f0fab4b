package optionstest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/strata-kv/strata/internal/optionstest"
)

var errInvalid = errors.New("invalid")

// options is the smallest type that follows the convention.
type options struct{ N int }

func (o *options) EnsureDefaults() {
	if o.N == 0 {
		o.N = 1
	}
}

func (o *options) Validate() error {
	if o.N < 0 {
		return fmt.Errorf("%w: N %d < 0", errInvalid, o.N)
	}
	return nil
}

func TestValidate(t *testing.T) {
	optionstest.Validate(t, errInvalid, []optionstest.Case[options]{
		{Name: "defaults", Opts: options{}, OK: true},
		{Name: "set", Opts: options{N: 3}, OK: true},
		{Name: "negative", Opts: options{N: -1}},
	})
}
