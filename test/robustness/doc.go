// Package robustness holds a process-level robustness suite: its tests
// build cmd/strata, start real member processes on loopback with a
// fault-injecting TCP proxy in front of each peer port, and hurt them
// (kill -9, SIGSTOP, full-cluster crash, partitions, one-way loss, delay,
// leadership transfer, compaction and defragmentation) while clientv3
// clients run. The clients' histories are checked at the end:
// linearizability with porcupine (unknown outcomes handled), no
// acknowledged write lost, revisions never going backwards, watch
// guarantees and identical HashKV on every member.
//
// The short form runs in `go test`; STRATA_ROBUSTNESS_LONG=<duration>
// runs each engine's scenario for that long. On a failure the history, the
// porcupine visualization and the members' logs are saved under
// $STRATA_ROBUSTNESS_OUT (default: a new directory under the system's temp
// directory), whose path the test logs.
package robustness
