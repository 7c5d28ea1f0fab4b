package engine_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/strata-kv/strata/engine"
)

type op struct {
	kind       engine.Kind
	key, value string
}

func readOps(t testing.TB, b *engine.Batch) []op {
	t.Helper()
	var ops []op
	r := b.Reader()
	for {
		kind, key, value, ok := r.Next()
		if !ok {
			break
		}
		ops = append(ops, op{kind, string(key), string(value)})
	}
	if err := r.Err(); err != nil {
		t.Fatalf("reader: %v", err)
	}
	return ops
}

func TestBatchRoundTrip(t *testing.T) {
	var b engine.Batch
	if !b.Empty() || b.Len() != 0 {
		t.Fatalf("zero batch not empty")
	}
	b.Set([]byte("a"), []byte("1"))
	b.Set([]byte("\x00\xff"), nil)
	b.Delete([]byte("a"))
	b.DeleteRange([]byte("b"), []byte("c"))
	b.DeleteRange([]byte("c"), []byte("b")) // empty range: dropped
	want := []op{
		{engine.KindSet, "a", "1"},
		{engine.KindSet, "\x00\xff", ""},
		{engine.KindDelete, "a", ""},
		{engine.KindDeleteRange, "b", "c"},
	}
	if b.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", b.Len(), len(want))
	}
	check := func(b *engine.Batch) {
		t.Helper()
		got := readOps(t, b)
		if len(got) != len(want) {
			t.Fatalf("ops = %v, want %v", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("op %d = %v, want %v", i, got[i], want[i])
			}
		}
	}
	check(&b)

	var c engine.Batch
	if err := c.SetRepr(b.Repr()); err != nil {
		t.Fatalf("SetRepr: %v", err)
	}
	check(&c)
	if !bytes.Equal(c.Repr(), b.Repr()) || c.Size() != b.Size() {
		t.Fatalf("repr changed across SetRepr")
	}

	b.Reset()
	if !b.Empty() || b.Err() != nil || len(readOps(t, &b)) != 0 {
		t.Fatalf("Reset left state behind")
	}
	var empty engine.Batch
	if err := empty.SetRepr(b.Repr()); err != nil || !empty.Empty() {
		t.Fatalf("empty repr round trip: %v", err)
	}
}

func TestBatchArgumentsAreCopied(t *testing.T) {
	var b engine.Batch
	k, v := []byte("key"), []byte("val")
	b.Set(k, v)
	k[0], v[0] = 'X', 'X'
	if got := readOps(t, &b); got[0].key != "key" || got[0].value != "val" {
		t.Fatalf("batch aliases its arguments: %v", got)
	}
}

func TestBatchStickyError(t *testing.T) {
	var b engine.Batch
	b.Set(nil, []byte("v"))
	b.Set([]byte("k"), []byte("v"))
	if !errors.Is(b.Err(), engine.ErrEmptyKey) {
		t.Fatalf("Err = %v, want ErrEmptyKey", b.Err())
	}
}

func TestSetReprRejectsCorrupt(t *testing.T) {
	var good engine.Batch
	good.Set([]byte("k"), []byte("v"))
	repr := good.Repr()
	for _, tc := range []struct {
		name string
		repr []byte
	}{
		{"nil", nil},
		{"short header", []byte{1, 0}},
		{"count mismatch", append([]byte{2, 0, 0, 0}, repr[4:]...)},
		{"truncated", repr[:len(repr)-1]},
		{"unknown kind", append([]byte{1, 0, 0, 0, 9}, repr[5:]...)},
		{"empty key", []byte{1, 0, 0, 0, byte(engine.KindSet), 0, 0}},
		{"delete with value", []byte{1, 0, 0, 0, byte(engine.KindDelete), 1, 'k', 1, 'v'}},
		{"huge length", []byte{1, 0, 0, 0, byte(engine.KindSet), 0xff, 0xff, 0xff, 0xff, 0x0f}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b engine.Batch
			if err := b.SetRepr(tc.repr); !errors.Is(err, engine.ErrCorruptBatch) {
				t.Fatalf("SetRepr = %v, want ErrCorruptBatch", err)
			}
		})
	}
}

func FuzzBatchSetRepr(f *testing.F) {
	var b engine.Batch
	b.Set([]byte("a"), []byte("1"))
	b.Delete([]byte("b"))
	b.DeleteRange([]byte("c"), []byte("d"))
	f.Add(b.Repr())
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b engine.Batch
		if err := b.SetRepr(data); err != nil {
			return
		}
		// A representation that decodes re-encodes to the same bytes.
		var c engine.Batch
		for _, o := range readOps(t, &b) {
			switch o.kind {
			case engine.KindSet:
				c.Set([]byte(o.key), []byte(o.value))
			case engine.KindDelete:
				c.Delete([]byte(o.key))
			case engine.KindDeleteRange:
				c.DeleteRange([]byte(o.key), []byte(o.value))
			}
		}
		if c.Err() != nil {
			t.Fatalf("decoded batch does not re-encode: %v", c.Err())
		}
		if b.Len() != c.Len() && !hasEmptyRange(&b) {
			t.Fatalf("re-encoded %d ops, decoded %d", c.Len(), b.Len())
		}
	})
}

// hasEmptyRange reports whether b holds a range delete with start >= end,
// which DeleteRange drops but a raw representation may carry.
func hasEmptyRange(b *engine.Batch) bool {
	r := b.Reader()
	for {
		kind, key, value, ok := r.Next()
		if !ok {
			return false
		}
		if kind == engine.KindDeleteRange && string(key) >= string(value) {
			return true
		}
	}
}
