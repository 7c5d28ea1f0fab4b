package server

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
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
//
// A trace costs a request at most one allocation, and none where it
// stays on its goroutine's stack: a write's, which is never passed on
// as a context. It is the request's context as well (carrying itself,
// for traceFrom) where a read passes it on; its first fields and steps
// live in arrays of its own, counted rather than sliced (a slice into
// itself would move it to the heap), and its fields keep their values
// unformatted until a slow request is logged.
type reqTrace struct {
	context.Context
	op    string
	start time.Time

	nfields, nsteps int
	fieldBuf        [4]traceField
	stepBuf         [3]traceStep
	// Fields and steps past the arrays' room.
	moreFields []traceField
	moreSteps  []traceStep
}

// traceField is a field of a trace's detail: a string (kept as the
// bytes it is made of: a request's key, not copied), an integer or a
// bool, shown as fmt's %v shows them.
type traceField struct {
	key  string
	kind traceKind
	str  []byte
	num  int64
}

type traceKind uint8

const (
	traceString traceKind = iota
	traceInt
	traceBool
)

// stringField is a field showing b as a string. b must not change
// while the trace is in use.
func stringField(key string, b []byte) traceField {
	return traceField{key: key, kind: traceString, str: b}
}

func intField(key string, n int64) traceField { return traceField{key: key, kind: traceInt, num: n} }

func boolField(key string, v bool) traceField {
	f := traceField{key: key, kind: traceBool}
	if v {
		f.num = 1
	}
	return f
}

// appendValue appends the field's value as %v shows it.
func (f traceField) appendValue(b []byte) []byte {
	switch f.kind {
	case traceInt:
		return strconv.AppendInt(b, f.num, 10)
	case traceBool:
		return strconv.AppendBool(b, f.num != 0)
	}
	return append(b, f.str...)
}

type traceStep struct {
	at  time.Time
	msg string
}

// newTrace starts the trace of a request whose context is ctx. A pointer
// to the trace is the context to pass on for traceFrom to find it.
func newTrace(ctx context.Context, op string, fields ...traceField) reqTrace {
	t := reqTrace{Context: ctx, op: op, start: time.Now()}
	for _, f := range fields {
		t.addField(f)
	}
	return t
}

func (t *reqTrace) addField(f traceField) {
	if t.nfields < len(t.fieldBuf) {
		t.fieldBuf[t.nfields] = f
		t.nfields++
		return
	}
	t.moreFields = append(t.moreFields, f)
}

// fieldAt returns the i-th field, for i < t.fieldCount().
func (t *reqTrace) fieldAt(i int) *traceField {
	if i < t.nfields {
		return &t.fieldBuf[i]
	}
	return &t.moreFields[i-t.nfields]
}

func (t *reqTrace) fieldCount() int { return t.nfields + len(t.moreFields) }

// stepAt returns the i-th step, for i < t.stepCount().
func (t *reqTrace) stepAt(i int) traceStep {
	if i < t.nsteps {
		return t.stepBuf[i]
	}
	return t.moreSteps[i-t.nsteps]
}

func (t *reqTrace) stepCount() int { return t.nsteps + len(t.moreSteps) }

// traceKey carries a request's *reqTrace in its context.
type traceKey struct{}

// Value returns the trace itself for traceKey, and the request context's
// values otherwise.
func (t *reqTrace) Value(key any) any {
	if _, ok := key.(traceKey); ok {
		return t
	}
	return t.Context.Value(key)
}

// traceFrom returns the request's trace, or nil (whose methods do
// nothing).
func traceFrom(ctx context.Context) *reqTrace {
	t, _ := ctx.Value(traceKey{}).(*reqTrace)
	return t
}

// step marks the end of a step of the request.
func (t *reqTrace) step(msg string) {
	if t == nil {
		return
	}
	st := traceStep{at: time.Now(), msg: msg}
	if t.nsteps < len(t.stepBuf) {
		t.stepBuf[t.nsteps] = st
		t.nsteps++
		return
	}
	t.moreSteps = append(t.moreSteps, st)
}

// field sets a field of the trace's detail.
func (t *reqTrace) field(f traceField) {
	if t == nil {
		return
	}
	for i := range t.fieldCount() {
		if p := t.fieldAt(i); p.key == f.key {
			*p = f
			return
		}
	}
	t.addField(f)
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
	stepThreshold := threshold / time.Duration(t.stepCount()+1)
	steps := []string{}
	last := t.start
	for i := range t.stepCount() {
		s := t.stepAt(i)
		if d := s.at.Sub(last); d > stepThreshold {
			// etcd's layout: the step's fields (none here) between the
			// message and the duration.
			steps = append(steps, fmt.Sprintf("'%s'  (duration: %v)", s.msg, d))
		}
		last = s.at
	}
	var detail strings.Builder
	if t.fieldCount() > 0 {
		detail.WriteString("{")
		var b []byte
		for i := range t.fieldCount() {
			f := t.fieldAt(i)
			b = append(append(b, f.key...), ':')
			b = append(f.appendValue(b), "; "...)
		}
		detail.Write(b)
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
