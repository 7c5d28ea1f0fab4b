package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

// BenchmarkRangeTrace is the slow-request trace's share of a Range: the
// trace with its fields, carried in the context, a step marked through
// the context and one directly, the response's fields, and the check at
// the end of a request that was not slow (not logged).
func BenchmarkRangeTrace(b *testing.B) {
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	key, end := []byte("foo"), []byte(nil)
	b.ReportAllocs()
	for b.Loop() {
		trace := newTrace(context.Background(), "range", stringField("range_begin", key), stringField("range_end", end))
		tr := &trace
		ctx := context.Context(tr)
		traceFrom(ctx).step(stepLinearized)
		tr.step(stepRange)
		tr.field(intField("response_count", 1))
		tr.field(intField("response_revision", 123456))
		tr.logIfLong(ctx, lg, traceThreshold)
	}
}
