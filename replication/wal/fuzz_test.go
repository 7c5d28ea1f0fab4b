package wal

import (
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder. With frame
// set, the bytes become the payload of a correctly framed record, so the
// fuzzer gets past the checksum into the payload parser. The decoder must
// never panic, and whatever it accepts must re-encode to an equal entry.
func FuzzDecodeRecord(f *testing.F) {
	for _, l := range []*raft.Log{
		mkLog(1, 1, 0), mkLog(2, 3, 10), mkLog(3, 1, 100), mkLog(1<<40, 1<<33, 5),
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("cfg")},
	} {
		rec := appendRecord(nil, l, 0)
		f.Add(rec, false)
		f.Add(rec[recordHeaderSize:], true)
		f.Add(appendRecord(nil, l, 7)[recordHeaderSize:], true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, b []byte, frame bool) {
		if frame {
			rec := append(make([]byte, recordHeaderSize), b...)
			b = sealRecord(rec, 0)
		}
		p, n, err := decodeRecord(b)
		if err != nil {
			return
		}
		if n > len(b) || len(p) != n-recordHeaderSize {
			t.Fatalf("decodeRecord size %d, payload %d, input %d", n, len(p), len(b))
		}
		var l raft.Log
		commit, err := decodeLog(p, &l)
		if err != nil {
			return
		}
		again := appendRecord(nil, &l, commit)
		p2, _, err := decodeRecord(again)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		var l2 raft.Log
		commit2, err := decodeLog(p2, &l2)
		if err != nil {
			t.Fatalf("re-encoded payload does not decode: %v", err)
		}
		if commit2 != commit {
			t.Fatalf("commit %d, then %d", commit, commit2)
		}
		if err := diffLog(&l2, &l); err != nil {
			t.Fatalf("round trip: %v", err)
		}
		// Scanning a segment made of this record must not panic either.
		seg := append(appendSegmentHeader(nil, l.Index), b[:n]...)
		scanSegment("fuzz", max(l.Index, 1), seg, true)
	})
}
