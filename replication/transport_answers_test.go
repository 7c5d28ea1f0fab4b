package replication

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestTransportAnswersInOrderUnbuffered checks the follower side of raft
// patch 6 (third_party/raft STRATA.md) over real TCP: NetworkTransport hands
// a pipelined AppendEntries to raft while the one before it is unanswered,
// writes the answers in order, and sends an answer as soon as it is given,
// even while a later command's answer is still awaited (it used to wait in
// the write buffer for it).
func TestTransportAnswersInOrderUnbuffered(t *testing.T) {
	// Room for both AppendEntries in flight: the pipeline's second send
	// would otherwise wait for the first answer.
	cfg := func() *raft.NetworkTransportConfig {
		return &raft.NetworkTransportConfig{MaxPool: 2, Timeout: 10 * time.Second, MaxRPCsInFlight: 4,
			Logger: hclog.NewNullLogger()}
	}
	server, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, cfg())
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := raft.NewTCPTransportWithConfig("127.0.0.1:0", nil, cfg())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	p, err := client.AppendEntriesPipeline("s", server.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(prev uint64) {
		t.Helper()
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("c"), Addr: []byte(client.LocalAddr())},
			Term: 1, PrevLogEntry: prev, PrevLogTerm: 1, Entries: []*raft.Log{{Index: prev + 1, Term: 1, Data: []byte("x")}}}
		if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
			t.Fatal(err)
		}
	}
	receive := func(what string) raft.RPC {
		t.Helper()
		select {
		case rpc := <-server.Consumer():
			return rpc
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not handed to raft", what)
		}
		return raft.RPC{}
	}

	send(1)
	send(2)
	first := receive("the first AppendEntries")
	// The second is handed over before the first is answered.
	second := receive("the second AppendEntries, the first unanswered")
	first.Respond(&raft.AppendEntriesResponse{Term: 1, LastLog: 2, Success: true}, nil)
	select {
	case f := <-p.Consumer():
		if got := f.Request().PrevLogEntry; got != 1 {
			t.Fatalf("first answer is for PrevLogEntry %d, want 1", got)
		}
		if !f.Response().Success {
			t.Fatal("first answer not a success")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first answer did not arrive while the second was unanswered")
	}
	second.Respond(&raft.AppendEntriesResponse{Term: 1, LastLog: 3, Success: true}, nil)
	select {
	case f := <-p.Consumer():
		if got := f.Request().PrevLogEntry; got != 2 {
			t.Fatalf("second answer is for PrevLogEntry %d, want 2", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the second answer did not arrive")
	}
}
