package robustness

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// opKind is what a client asked of one key.
type opKind int

const (
	opGet opKind = iota
	opPut
	opDelete
	// opCAS is a Kubernetes-style conditional write: a Txn that puts the
	// key if its mod_revision is rev (0: the key does not exist) and reads
	// it otherwise.
	opCAS
)

// kvInput is one operation on one key.
type kvInput struct {
	Kind  opKind
	Key   string
	Value string
	Rev   int64 // opCAS: the mod_revision compared
}

// kvOutput is an operation's result; a nil output is an unknown outcome
// (the client got an error: the write may or may not have happened).
type kvOutput struct {
	Exists    bool   // opGet, failed opCAS: the key exists
	Value     string // opGet, failed opCAS: its value
	ModRev    int64  // opGet, failed opCAS: its mod_revision
	Deleted   int64  // opDelete
	Succeeded bool   // opCAS
	Rev       int64  // the response header's revision
	// Member and Term are the answering member's ID and raft term (the
	// response header's), for the report: the model ignores them.
	Member, Term uint64
}

// kvState is a key's state: its value and mod_revision, which an unknown
// write leaves unknown (-1) until a read reveals it.
type kvState struct {
	Exists bool
	Value  string
	ModRev int64
}

// kvModel is a register per key with revisions, checked key by key. It is
// non-deterministic because a write with an unknown outcome may or may not
// have happened, and a CAS against an unknown mod_revision may go either
// way.
var kvModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string]int{}
		var out [][]porcupine.Operation
		for _, op := range history {
			k := op.Input.(kvInput).Key
			i, ok := byKey[k]
			if !ok {
				i = len(out)
				byKey[k] = i
				out = append(out, nil)
			}
			out[i] = append(out[i], op)
		}
		return out
	},
	Init: func() []any { return []any{kvState{}} },
	Step: func(state, input, output any) []any {
		s, in := state.(kvState), input.(kvInput)
		out, known := output.(*kvOutput)
		known = known && out != nil
		switch in.Kind {
		case opGet:
			if s2, ok := s.sees(out); ok {
				return []any{s2}
			}
			return nil
		case opPut:
			if !known {
				return []any{kvState{Exists: true, Value: in.Value, ModRev: -1}}
			}
			if s.ModRev >= 0 && out.Rev <= s.ModRev {
				return nil // a write's revision is above the key's
			}
			return []any{kvState{Exists: true, Value: in.Value, ModRev: out.Rev}}
		case opDelete:
			if !known {
				return []any{kvState{}}
			}
			if (out.Deleted == 1) != s.Exists {
				return nil
			}
			return []any{kvState{}}
		case opCAS:
			match := func(rev int64) bool { return (s.Exists && s.ModRev == rev) || (!s.Exists && rev == 0) }
			maybe := s.Exists && s.ModRev == -1 && in.Rev != 0
			if !known {
				var next []any
				if match(in.Rev) || maybe {
					next = append(next, kvState{Exists: true, Value: in.Value, ModRev: -1})
				}
				if !match(in.Rev) || maybe {
					next = append(next, s)
				}
				return next
			}
			if out.Succeeded {
				if !match(in.Rev) && !maybe {
					return nil
				}
				if in.Rev != 0 && out.Rev <= in.Rev {
					return nil
				}
				return []any{kvState{Exists: true, Value: in.Value, ModRev: out.Rev}}
			}
			if match(in.Rev) {
				return nil
			}
			s2, ok := s.sees(out)
			if !ok || (s2.Exists && s2.ModRev == in.Rev) {
				return nil
			}
			return []any{s2}
		}
		panic(fmt.Sprintf("unknown op %v", in.Kind))
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		out, _ := output.(*kvOutput)
		res := "unknown"
		if out != nil {
			switch in.Kind {
			case opGet:
				res = describeRead(out)
			case opPut:
				res = fmt.Sprintf("ok rev %d", out.Rev)
			case opDelete:
				res = fmt.Sprintf("deleted %d rev %d", out.Deleted, out.Rev)
			case opCAS:
				if out.Succeeded {
					res = fmt.Sprintf("ok rev %d", out.Rev)
				} else {
					res = "failed, " + describeRead(out)
				}
			}
		}
		switch in.Kind {
		case opGet:
			return fmt.Sprintf("get(%s) -> %s", in.Key, res)
		case opPut:
			return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, res)
		case opDelete:
			return fmt.Sprintf("delete(%s) -> %s", in.Key, res)
		default:
			return fmt.Sprintf("cas(%s, mod_rev==%d, %s) -> %s", in.Key, in.Rev, in.Value, res)
		}
	},
	DescribeState: func(state any) string {
		s := state.(kvState)
		if !s.Exists {
			return "absent"
		}
		return fmt.Sprintf("%s@%d", s.Value, s.ModRev)
	},
}).ToModel()

// sees reports whether a read returning out is possible in s, and the state
// with an unknown mod_revision filled in from it.
func (s kvState) sees(out *kvOutput) (kvState, bool) {
	if out.Exists != s.Exists {
		return s, false
	}
	if !s.Exists {
		return s, true
	}
	if out.Value != s.Value || (s.ModRev >= 0 && out.ModRev != s.ModRev) {
		return s, false
	}
	s.ModRev = out.ModRev
	return s, true
}

func describeRead(out *kvOutput) string {
	if !out.Exists {
		return "absent"
	}
	return fmt.Sprintf("%s@%d", out.Value, out.ModRev)
}
