package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// entryVersion is the first byte of every raft log command Strata writes.
const entryVersion byte = 1

// ErrCorruptEntry is returned when a raft log command cannot be decoded.
var ErrCorruptEntry = errors.New("replication: corrupt log entry")

// A raft log command holds a batch of client requests proposed together
// (proposal batching: one raft entry, one log append, many requests):
//
//	version byte (1) | uvarint count | count × (uvarint length | InternalRaftRequest)
//
// An entry with no request is the barrier a new leader commits before it
// serves linearizable reads.

// encodeEntry appends the encoding of reqs to dst.
func encodeEntry(dst []byte, reqs []*pb.InternalRaftRequest) ([]byte, error) {
	dst = append(dst, entryVersion)
	dst = binary.AppendUvarint(dst, uint64(len(reqs)))
	for _, r := range reqs {
		var err error
		if dst, err = appendRequest(dst, r); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// appendRequest appends one request of an entry, its length and its
// encoding, to dst. On error dst is returned as it was.
func appendRequest(dst []byte, r *pb.InternalRaftRequest) ([]byte, error) {
	opts := proto.MarshalOptions{}
	start := len(dst)
	dst = binary.AppendUvarint(dst, uint64(opts.Size(r)))
	out, err := opts.MarshalAppend(dst, r)
	if err != nil {
		return dst[:start], fmt.Errorf("replication: encode request: %w", err)
	}
	return out, nil
}

// newEntry returns a new entry of count requests, whose encodings
// (appendRequest's) are body.
func newEntry(count int, body []byte) []byte {
	e := make([]byte, 0, 1+binary.MaxVarintLen64+len(body))
	e = append(e, entryVersion)
	e = binary.AppendUvarint(e, uint64(count))
	return append(e, body...)
}

// decodeEntry decodes a raft log command.
func decodeEntry(data []byte) ([]*pb.InternalRaftRequest, error) {
	if len(data) == 0 || data[0] != entryVersion {
		return nil, fmt.Errorf("%w: bad version", ErrCorruptEntry)
	}
	data = data[1:]
	count, w := binary.Uvarint(data)
	if w <= 0 || count > uint64(len(data)) {
		return nil, fmt.Errorf("%w: bad count", ErrCorruptEntry)
	}
	data = data[w:]
	reqs := make([]*pb.InternalRaftRequest, 0, count)
	for i := range count {
		n, w := binary.Uvarint(data)
		if w <= 0 || n > uint64(len(data)-w) {
			return nil, fmt.Errorf("%w: request %d: bad length", ErrCorruptEntry, i)
		}
		r := &pb.InternalRaftRequest{}
		if err := proto.Unmarshal(data[w:w+int(n)], r); err != nil {
			return nil, fmt.Errorf("%w: request %d: %w", ErrCorruptEntry, i, err)
		}
		reqs = append(reqs, r)
		data = data[w+int(n):]
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptEntry, len(data))
	}
	return reqs, nil
}

// proposedEntries holds the requests of the entries this node proposed
// and raft has not answered yet, by the entry's bytes (the very slice given
// to raft.Apply, which the leader's raft hands its FSM), so that the leader
// applies its own entries without decoding what it has just encoded. An
// entry applied from another copy of its bytes (a follower's, one read
// back from the log) is decoded as any other.
type proposedEntries struct {
	mu sync.Mutex
	m  map[*byte][]*pb.InternalRaftRequest
}

// add records reqs as the requests of the entry data.
func (p *proposedEntries) add(data []byte, reqs []*pb.InternalRaftRequest) {
	p.mu.Lock()
	if p.m == nil {
		p.m = make(map[*byte][]*pb.InternalRaftRequest)
	}
	p.m[&data[0]] = reqs
	p.mu.Unlock()
}

// get returns the requests of the entry data, if this node proposed it
// and data is the slice it proposed.
func (p *proposedEntries) get(data []byte) []*pb.InternalRaftRequest {
	if len(data) == 0 {
		return nil
	}
	p.mu.Lock()
	reqs := p.m[&data[0]]
	p.mu.Unlock()
	return reqs
}

// remove forgets the entry data, once raft answered it.
func (p *proposedEntries) remove(data []byte) {
	p.mu.Lock()
	delete(p.m, &data[0])
	p.mu.Unlock()
}

// len is the number of entries held.
func (p *proposedEntries) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}
