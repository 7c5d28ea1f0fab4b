package server

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// traceThreshold is etcd's: a request traced for longer than this is
// logged with its steps (etcdserver's traceThreshold, not configurable).
const traceThreshold = 100 * time.Millisecond

// reqTrace is etcd's slow request trace (pkg/traceutil): the steps of
// one KV request, logged as one "trace" line at info, as etcd's, when the
// request took longer than traceThreshold. Operators grep for these
// lines (msg "trace", the operation and each step's duration) to see
// where a slow request spent its time. A reqTrace belongs to one request's
// goroutine.
type reqTrace struct {
	op     string
	start  time.Time
	fields []traceField
	steps  []traceStep
}

type traceField struct {
	key   string
	value any
}

type traceStep struct {
	at  time.Time
	msg string
}

func newTrace(op string, fields ...traceField) *reqTrace {
	return &reqTrace{op: op, start: time.Now(), fields: fields}
}

// traceKey carries a request's *reqTrace in its context.
type traceKey struct{}

func withTrace(ctx context.Context, t *reqTrace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// traceFrom returns the request's trace, or nil (whose methods do
// nothing).
func traceFrom(ctx context.Context) *reqTrace {
	t, _ := ctx.Value(traceKey{}).(*reqTrace)
	return t
}

// step marks the end of a step of the request.
func (t *reqTrace) step(msg string) {
	if t != nil {
		t.steps = append(t.steps, traceStep{at: time.Now(), msg: msg})
	}
}

// field sets a field of the trace's detail.
func (t *reqTrace) field(key string, value any) {
	if t == nil {
		return
	}
	for i := range t.fields {
		if t.fields[i].key == key {
			t.fields[i].value = value
			return
		}
	}
	t.fields = append(t.fields, traceField{key, value})
}

// logIfLong logs the trace if the request took longer than threshold,
// with the steps that took longer than their share of it, as etcd's
// Trace.LogIfLong.
func (t *reqTrace) logIfLong(ctx context.Context, lg *slog.Logger, threshold time.Duration) {
	if t == nil {
		return
	}
	end := time.Now()
	took := end.Sub(t.start)
	if took <= threshold || !lg.Enabled(ctx, slog.LevelInfo) {
		return
	}
	stepThreshold := threshold / time.Duration(len(t.steps)+1)
	steps := []string{}
	last := t.start
	for _, s := range t.steps {
		if d := s.at.Sub(last); d > stepThreshold {
			// etcd's layout: the step's fields (none here) between the
			// message and the duration.
			steps = append(steps, fmt.Sprintf("'%s'  (duration: %v)", s.msg, d))
		}
		last = s.at
	}
	var detail strings.Builder
	if len(t.fields) > 0 {
		detail.WriteString("{")
		for _, f := range t.fields {
			fmt.Fprintf(&detail, "%s:%v; ", f.key, f.value)
		}
		detail.WriteString("}")
	}
	lg.Info("trace", "trace_id", rand.Int32(), "operation", t.op, "detail", detail.String(),
		"duration", took, "start", t.start, "end", end, "steps", steps, "step_count", len(steps))
}

// Step messages, etcd's where the step is the same.
const (
	stepLinearized = "agreement among raft nodes before linearized reading"
	stepRaft       = "process raft request"
	stepRange      = "range keys from the store"
	stepTxnRead    = "read the transaction's ranges from the store"
)

// warnSlowRead logs etcd's "apply request took too long" line for a
// read served locally (prefix "read-only range " or "read-only txn "),
// with the response as etcd prints it, and counts it in
// etcd_server_slow_apply_total, as etcd does.
func (s *Server) warnSlowRead(ctx context.Context, start time.Time, req fmt.Stringer, prefix string, resp proto.Message, err error) {
	took, warn := time.Since(start), s.cfg.warningApplyDuration()
	if took <= warn {
		return
	}
	s.slowReads.Add(1)
	var out string
	switch r := resp.(type) {
	case *pb.RangeResponse:
		if r != nil {
			out = fmt.Sprintf("range_response_count:%d size:%d", len(r.Kvs), proto.Size(r))
		}
	case *pb.TxnResponse:
		if r != nil {
			var parts []string
			for _, op := range r.Responses {
				if rr, ok := op.Response.(*pb.ResponseOp_ResponseRange); ok {
					if rr.ResponseRange != nil {
						parts = append(parts, fmt.Sprintf("range_response_count:%d", len(rr.ResponseRange.GetKvs())))
					} else {
						parts = append(parts, "range_response:nil")
					}
				}
			}
			out = fmt.Sprintf("responses:<%s> size:%d", strings.Join(parts, " "), proto.Size(r))
		}
	}
	attrs := []any{"took", took, "expected-duration", warn, "prefix", prefix,
		"request", req.String(), "response", out}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	s.cfg.Logger.Warn("apply request took too long", attrs...)
}
