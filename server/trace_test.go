package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
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

// TestTraceOverflow checks a trace keeps fields and steps past the room of
// its arrays, in order, and that a field set again replaces its value
// wherever it is kept.
func TestTraceOverflow(t *testing.T) {
	tr := newTrace(context.Background(), "op", intField("a", 1), intField("b", 2), intField("c", 3), intField("d", 4), intField("e", 5))
	tr.field(intField("f", 6))
	tr.field(intField("b", 20))
	tr.field(intField("f", 60))
	tr.start = tr.start.Add(-time.Second) // slow: it is logged
	for i := range 5 {
		tr.step(fmt.Sprintf("step %d", i))
	}
	var buf bytes.Buffer
	tr.logIfLong(context.Background(), slog.New(slog.NewJSONHandler(&buf, nil)), traceThreshold)
	var line struct {
		Detail string   `json:"detail"`
		Steps  []string `json:"steps"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if want := "{a:1; b:20; c:3; d:4; e:5; f:60; }"; line.Detail != want {
		t.Errorf("detail %q, want %q", line.Detail, want)
	}
	// Only the first step took longer than its share.
	if len(line.Steps) != 1 || !strings.HasPrefix(line.Steps[0], "'step 0'") {
		t.Errorf("steps %q, want the first one only", line.Steps)
	}
	if got := tr.stepCount(); got != 5 {
		t.Errorf("%d steps kept, want 5", got)
	}
}

// TestWriteTraceAllocs checks the trace of a write, used as Put uses it
// (never passed on as a context), costs no allocation.
func TestWriteTraceAllocs(t *testing.T) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	key := []byte("foo")
	allocs := testing.AllocsPerRun(100, func() {
		tr := newTrace(context.Background(), "put", stringField("key", key), intField("req_size", 14))
		tr.step(stepRaft)
		tr.field(intField("response_revision", 7))
		tr.logIfLong(context.Background(), lg, traceThreshold)
	})
	if allocs != 0 {
		t.Errorf("%v allocations a write trace, want 0", allocs)
	}
}
