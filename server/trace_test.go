package server

import (
	"fmt"
	"testing"
)

// TestTraceFieldValue checks a trace field shows its value as fmt's %v
// showed the value etcd's trace keeps.
func TestTraceFieldValue(t *testing.T) {
	for _, tc := range []struct {
		f    traceField
		want any
	}{
		{stringField("key", []byte("foo")), "foo"},
		{stringField("range_end", nil), ""},
		{stringField("key", []byte("\x00\xff")), "\x00\xff"},
		{intField("response_count", 0), 0},
		{intField("response_revision", -3), int64(-3)},
		{intField("req_size", 1<<40), int64(1 << 40)},
		{boolField("read_only", true), true},
		{boolField("read_only", false), false},
	} {
		if got, want := string(tc.f.appendValue(nil)), fmt.Sprintf("%v", tc.want); got != want {
			t.Errorf("%s: got %q, want %q", tc.f.key, got, want)
		}
	}
}
