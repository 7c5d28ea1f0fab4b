package replication

import (
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestPipelineAfterDecoderStops replays raft's pipeline deadlock over real
// TCP: the follower refuses every entry, raft's decoder reads one response
// and stops (as pipelineDecode does on a refusal), and the send loop sends
// twice more. On NetworkTransport's own pipeline the second of those sends
// blocks until the pipeline is closed, which raft never does from there;
// through drainedPipeline both return.
func TestPipelineAfterDecoderStops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wrap    func(raft.AppendPipeline) raft.AppendPipeline
		blocked bool
	}{
		{"raft's pipeline", func(p raft.AppendPipeline) raft.AppendPipeline { return p }, true},
		{"drained", func(p raft.AppendPipeline) raft.AppendPipeline { return newDrainedPipeline(p) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			follower, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer follower.Close()
			stop := make(chan struct{})
			served := make(chan struct{})
			go func() {
				defer close(served)
				for {
					select {
					case rpc := <-follower.Consumer():
						rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: false}, nil)
					case <-stop:
						return
					}
				}
			}()
			defer func() { close(stop); <-served }()
			leader, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			defer leader.Close()
			raw, err := leader.AppendEntriesPipeline("f", follower.LocalAddr())
			if err != nil {
				t.Fatal(err)
			}
			p := tc.wrap(raw)
			send := func() error {
				_, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, &raft.AppendEntriesResponse{})
				return err
			}
			if err := send(); err != nil {
				t.Fatal(err)
			}
			select {
			case f := <-p.Consumer():
				if f.Response().Success {
					t.Fatal("the follower accepted the entry")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no response")
			}
			// The decoder has stopped; the send loop sends twice more.
			sent := make(chan error, 1)
			go func() {
				err := send()
				if err == nil {
					err = send()
				}
				sent <- err
			}()
			select {
			case err := <-sent:
				if tc.blocked {
					t.Fatalf("the sends returned (%v): raft's pipeline no longer deadlocks, drainedPipeline may go", err)
				}
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(3 * time.Second):
				if !tc.blocked {
					t.Fatal("a send is blocked 3s after the decoder stopped")
				}
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.blocked {
				<-sent // Close releases the blocked send
			}
		})
	}
}
