package server

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// encodedMessage is a message already in its wire format: the watch
// responses an mvcc.WatchStream encodes once for all their watchers. Only
// the server's codec knows it: send it with SendMsg.
type encodedMessage []byte

// codec is gRPC's proto codec, plus encodedMessage, whose bytes it passes
// through as they are. It counts the bytes of the messages it encodes and
// decodes, as etcd's codec does (etcd_network_client_grpc_{sent,received}
// _bytes_total): a gRPC stats handler would see the same sizes, but costs
// every RPC a copy of its metadata and several events.
type codec struct {
	proto   encoding.CodecV2
	traffic *clientTraffic
}

func newCodec(t *clientTraffic) codec {
	return codec{proto: encoding.GetCodecV2(proto.Name), traffic: t}
}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(encodedMessage); ok {
		c.traffic.sent.Add(float64(len(m)))
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	out, err := c.proto.Marshal(v)
	if err == nil {
		c.traffic.sent.Add(float64(out.Len()))
	}
	return out, err
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	c.traffic.received.Add(float64(data.Len()))
	return c.proto.Unmarshal(data, v)
}

func (c codec) Name() string { return proto.Name }
