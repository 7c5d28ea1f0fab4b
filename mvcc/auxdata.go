package mvcc

import (
	"bytes"
	"errors"

	"github.com/strata-kv/strata/engine"
)

// prefixAux starts the auxiliary area: prefixAux + name -> value. It holds
// small records that are replicated with the keyspace but are not part of
// it (member attributes, say): they are written in a WriteBatch's engine
// commit, travel in backups, and are invisible to Range, watch and HashKV.
const prefixAux byte = 'x'

// SetAux stores value under name in the auxiliary area, in the batch's
// engine commit. Later calls in the batch win.
func (w *WriteBatch) SetAux(name, value []byte) {
	w.setAux(name, value, false)
}

// DeleteAux removes name from the auxiliary area in the batch's commit.
func (w *WriteBatch) DeleteAux(name []byte) {
	w.setAux(name, nil, true)
}

func (w *WriteBatch) setAux(name, value []byte, del bool) {
	if w.aux == nil {
		w.aux = map[string]auxChange{}
	}
	w.aux[string(name)] = auxChange{value: bytes.Clone(value), del: del}
	w.size += 1 + len(name) + len(value)
}

// auxChange is one pending change of the auxiliary area.
type auxChange struct {
	value []byte
	del   bool
}

// writeAux adds the batch's auxiliary changes to the engine batch b, and
// returns how many bytes they add to the engine's records (negative when
// they remove more). applyAux records the new sizes once b is committed.
func (w *WriteBatch) writeAux(b *engine.Batch) int64 {
	var added int64
	for name, c := range w.aux {
		key := append([]byte{prefixAux}, name...)
		added -= w.s.auxSizes[name]
		if c.del {
			b.Delete(key)
		} else {
			b.Set(key, c.value)
			added += int64(len(key) + len(c.value))
		}
	}
	return added
}

// applyAux records the sizes of the auxiliary records the batch wrote.
func (w *WriteBatch) applyAux() {
	for name, c := range w.aux {
		if c.del {
			delete(w.s.auxSizes, name)
		} else {
			w.s.auxSizes[name] = int64(1 + len(name) + len(c.value))
		}
	}
}

// Aux returns the committed auxiliary records whose names start with
// prefix, by name.
func (s *Store) Aux(prefix []byte) (map[string][]byte, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	return ReadAux(s.be, prefix)
}

// ReadAux returns the auxiliary records whose names start with prefix, by
// name, from a backend holding a store (open or not).
func ReadAux(be engine.Backend, prefix []byte) (map[string][]byte, error) {
	snap, err := be.NewSnapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	lower := append([]byte{prefixAux}, prefix...)
	upper := []byte{prefixAux + 1}
	if len(prefix) > 0 {
		upper = prefixUpper(lower)
	}
	it, err := snap.NewIter(&engine.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key()[1:])] = bytes.Clone(it.Value())
	}
	return out, errors.Join(it.Error(), it.Close())
}

// BackendAux reads the auxiliary records of a backend holding a store
// that is not open (ReadAux), as Store.Aux reads them.
type BackendAux struct{ Backend engine.Backend }

// Aux is ReadAux.
func (b BackendAux) Aux(prefix []byte) (map[string][]byte, error) { return ReadAux(b.Backend, prefix) }

// prefixUpper returns the smallest key above every key starting with p, or
// nil when there is none.
func prefixUpper(p []byte) []byte {
	u := bytes.Clone(p)
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] < 0xff {
			u[i]++
			return u[:i+1]
		}
	}
	return nil
}
