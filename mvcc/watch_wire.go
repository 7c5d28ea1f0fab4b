package mvcc

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// This file encodes a stream's responses as etcd's WatchResponse messages
// (api/etcdserverpb/rpc.proto), byte for byte what proto.Marshal makes of
// them: fields in number order, zero values left out. An event's bytes
// are made once (event.wire) and appended to the response of every
// watcher it goes to.

// Field numbers of WatchResponse and ResponseHeader.
const (
	watchResponseHeader          protowire.Number = 1
	watchResponseWatchID         protowire.Number = 2
	watchResponseCreated         protowire.Number = 3
	watchResponseCanceled        protowire.Number = 4
	watchResponseCompactRevision protowire.Number = 5
	watchResponseCancelReason    protowire.Number = 6
	watchResponseEvents          protowire.Number = 11

	headerClusterID protowire.Number = 1
	headerMemberID  protowire.Number = 2
	headerRevision  protowire.Number = 3
	headerRaftTerm  protowire.Number = 4
)

// WireHeader holds the fields of a response header that a WatchStream
// does not know: it fills in Revision itself.
type WireHeader struct {
	ClusterID, MemberID, RaftTerm uint64
}

func appendVarintField(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func varintFieldSize(n protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(n) + protowire.SizeVarint(v)
}

// appendHeader appends the header field of a response.
func appendHeader(b []byte, h WireHeader, rev int64) []byte {
	size := varintFieldSize(headerClusterID, h.ClusterID) + varintFieldSize(headerMemberID, h.MemberID) +
		varintFieldSize(headerRevision, uint64(rev)) + varintFieldSize(headerRaftTerm, h.RaftTerm)
	b = protowire.AppendTag(b, watchResponseHeader, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	b = appendVarintField(b, headerClusterID, h.ClusterID)
	b = appendVarintField(b, headerMemberID, h.MemberID)
	b = appendVarintField(b, headerRevision, uint64(rev))
	return appendVarintField(b, headerRaftTerm, h.RaftTerm)
}

// appendEntry appends the encoding of e's response to b, when it needs
// nothing but the stream's queue (no prev_kv, no fragments), and reports
// whether it did.
func appendEntry(b []byte, h WireHeader, e *streamEntry) ([]byte, bool) {
	for _, ev := range e.evs {
		if ev.wire == nil {
			return b, false
		}
	}
	b = appendHeader(b, h, e.rev)
	b = appendVarintField(b, watchResponseWatchID, uint64(e.id))
	switch e.kind {
	case entryCreated:
		b = appendVarintField(b, watchResponseCreated, 1)
	case entryCanceled:
		b = appendVarintField(b, watchResponseCanceled, 1)
	case entryRejected:
		b = appendVarintField(b, watchResponseCreated, 1)
		b = appendVarintField(b, watchResponseCanceled, 1)
		if e.reason != "" {
			b = protowire.AppendTag(b, watchResponseCancelReason, protowire.BytesType)
			b = protowire.AppendString(b, e.reason)
		}
	case entryCompacted:
		b = appendVarintField(b, watchResponseCanceled, 1)
		b = appendVarintField(b, watchResponseCompactRevision, uint64(e.compat))
	}
	for _, ev := range e.evs {
		b = append(b, ev.wire...)
	}
	return b, true
}

// encodeBatch encodes the responses of entries, with header h, into one
// buffer and returns them in order.
func (ws *WatchStream) encodeBatch(entries []streamEntry, h WireHeader) [][]byte {
	size := 0
	for i := range entries {
		size += 64
		for _, ev := range entries[i].evs {
			size += len(ev.wire)
		}
	}
	buf := make([]byte, 0, size)
	ends := make([]int, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.w == nil || len(e.evs) == 0 || (!e.w.prevKV && !(e.w.fragment && ws.opts.FragmentBytes > 0)) {
			var ok bool
			if buf, ok = appendEntry(buf, h, e); ok {
				ends = append(ends, len(buf))
				continue
			}
		}
		for _, resp := range ws.finish(e) {
			resp.Header.ClusterId, resp.Header.MemberId, resp.Header.RaftTerm = h.ClusterID, h.MemberID, h.RaftTerm
			b, err := proto.MarshalOptions{}.MarshalAppend(buf, resp)
			if err != nil {
				// Only an invalid UTF-8 string fails, and the stream's
				// strings are its own error texts.
				panic(fmt.Sprintf("mvcc: encoding a watch response: %v", err))
			}
			buf = b
			ends = append(ends, len(buf))
		}
	}
	out := make([][]byte, len(ends))
	start := 0
	for i, end := range ends {
		out[i] = buf[start:end:end]
		start = end
	}
	return out
}
