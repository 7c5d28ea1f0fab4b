package replication

import (
	"sync"

	"github.com/hashicorp/raft"
)

// AppendEntriesPipeline returns NetworkTransport's pipeline with its
// responses drained as they arrive (drainedPipeline), so that replication
// to a peer cannot deadlock.
//
// raft v1.8.0's pipeline deadlocks when a follower refuses an entry: raft's
// decoder (pipelineDecode) stops reading responses and ends, but the loop
// that sends may pick another send before it sees that; with the default
// two RPCs in flight the transport's channels are unbuffered, so the
// transport's response reader blocks handing the next response to nobody
// and that send blocks handing its request to the reader. The send loop
// never returns, so neither does the peer's replication goroutine nor its
// heartbeat goroutine (which goes on heartbeating a peer this node no longer
// leads), and raft's Shutdown, which waits for them, never returns: the
// robustness long run's removed member still running 20 s after its
// removal, heartbeating a peer it led two terms before.
func (t tcpTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newDrainedPipeline(p), nil
}

// drainedPipeline takes every response of the pipeline it wraps as soon as
// the transport decodes it and queues it for Consumer, so the transport's
// reader never waits on raft's decoder. The order of responses is kept, and
// so is the transport's bound on requests in flight (its reader still takes
// one request at a time). Its goroutine ends with Close.
type drainedPipeline struct {
	raft.AppendPipeline
	out  chan raft.AppendFuture
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newDrainedPipeline(p raft.AppendPipeline) *drainedPipeline {
	d := &drainedPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture), stop: make(chan struct{}), done: make(chan struct{})}
	go d.drain(p.Consumer())
	return d
}

func (d *drainedPipeline) drain(in <-chan raft.AppendFuture) {
	defer close(d.done)
	var queue []raft.AppendFuture
	for {
		var out chan raft.AppendFuture
		var head raft.AppendFuture
		if len(queue) > 0 {
			out, head = d.out, queue[0]
		}
		select {
		case f := <-in:
			queue = append(queue, f)
		case out <- head:
			queue[0] = nil
			queue = queue[1:]
		case <-d.stop:
			return
		}
	}
}

// Consumer returns the responses, in the order the requests were sent.
func (d *drainedPipeline) Consumer() <-chan raft.AppendFuture { return d.out }

// Close closes the wrapped pipeline and ends the draining goroutine.
func (d *drainedPipeline) Close() error {
	err := d.AppendPipeline.Close()
	d.once.Do(func() { close(d.stop) })
	<-d.done
	return err
}
