package enginetest

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/strata-kv/strata/engine"
)

// model is the in-memory reference an engine is checked against: a plain map
// sorted on demand.
type model map[string]string

func (m model) clone() model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// apply applies a batch to the model with the engine contract's semantics.
func (m model) apply(b *engine.Batch) {
	r := b.Reader()
	for {
		kind, key, value, ok := r.Next()
		if !ok {
			return
		}
		switch kind {
		case engine.KindSet:
			m[string(key)] = string(value)
		case engine.KindDelete:
			delete(m, string(key))
		case engine.KindDeleteRange:
			for k := range m {
				if k >= string(key) && k < string(value) {
					delete(m, k)
				}
			}
		}
	}
}

// kv is one key/value pair as seen by a scan.
type kv struct{ k, v string }

func (p kv) String() string { return fmt.Sprintf("%q=%q", p.k, p.v) }

// scan returns the model's pairs inside [lower, upper) in iteration order.
func (m model) scan(o *engine.IterOptions) []kv {
	var out []kv
	for k, v := range m {
		if o != nil && o.LowerBound != nil && k < string(o.LowerBound) {
			continue
		}
		if o != nil && o.UpperBound != nil && k >= string(o.UpperBound) {
			continue
		}
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].k < out[j].k })
	if o != nil && o.Reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// seek returns the model's pairs an iterator yields after Seek(key).
func (m model) seek(o *engine.IterOptions, key []byte) []kv {
	all := m.scan(o)
	reverse := o != nil && o.Reverse
	for i, p := range all {
		if (!reverse && p.k >= string(key)) || (reverse && p.k <= string(key)) {
			return all[i:]
		}
	}
	return nil
}

// drain collects what an iterator yields from its current position.
func drain(it engine.Iterator, ok bool) ([]kv, error) {
	var out []kv
	for ; ok; ok = it.Next() {
		if !it.Valid() {
			return out, fmt.Errorf("positioning returned true but Valid is false")
		}
		out = append(out, kv{string(it.Key()), string(it.Value())})
	}
	if it.Valid() {
		return out, fmt.Errorf("positioning returned false but Valid is true")
	}
	return out, it.Error()
}

func diffKVs(got, want []kv) string {
	if len(got) == len(want) {
		same := true
		for i := range got {
			if got[i] != want[i] {
				same = false
				break
			}
		}
		if same {
			return ""
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "got %d pairs, want %d", len(got), len(want))
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w string
		if i < len(got) {
			g = got[i].String()
		}
		if i < len(want) {
			w = want[i].String()
		}
		if g != w {
			fmt.Fprintf(&sb, "\n  first difference at %d: got %s, want %s", i, g, w)
			break
		}
	}
	return sb.String()
}

// readAll scans a whole snapshot.
func readAll(s engine.Snapshot) ([]kv, error) {
	it, err := s.NewIter(nil)
	if err != nil {
		return nil, err
	}
	got, err := drain(it, it.First())
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return got, err
}

func succ(b []byte) []byte {
	return append(bytes.Clone(b), 0)
}
