package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

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
	opts := proto.MarshalOptions{}
	for _, r := range reqs {
		n := opts.Size(r)
		dst = binary.AppendUvarint(dst, uint64(n))
		var err error
		if dst, err = opts.MarshalAppend(dst, r); err != nil {
			return nil, fmt.Errorf("replication: encode request: %w", err)
		}
	}
	return dst, nil
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
