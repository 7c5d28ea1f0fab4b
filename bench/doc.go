// Package bench is the benchmark library behind cmd/kvbench: workloads,
// the stores they drive, the run loop and the reports.
//
// A [Workload] is a mix of operations over a keyspace: YCSB A–F as upstream
// YCSB defines them, puts, gets, scans and deletes, the requests of
// kube-apiserver (KindK8s), watch fan-out and latency (KindWatch), and runs
// that compact or defragment halfway to measure the pause. [Presets] lists
// the built-in ones and [Preset] finds one by name; the key choosers
// (uniform, zipfian, latest, sequential) are the [Generator]s.
//
// A [Store] is what a workload drives, from the bottom of the stack up:
// an engine.Backend ([EngineStore]), an mvcc.Store ([MVCCStore]), or any
// etcd v3 endpoint over gRPC ([ClientStore]), such as an in-process Strata
// cluster from [StartCluster] or a real etcd. Workloads that send etcd's
// own requests (transactions, leases, watches, compaction) need an
// [EtcdStore]; [Workload.NeedsEtcd] tells which.
//
// [Load] and [LoadWorkload] write the records a run starts from; [Run]
// runs a workload for a duration or a number of operations with a number
// of clients, optionally at a fixed rate, and returns a [Result] with
// HdrHistogram latencies per operation kind, throughput over time, watch
// events and pauses. [StartRSS] samples a process's memory meanwhile.
// A [Report] gathers runs: it gives their comparison tables
// ([Report.Tables], [Report.WriteTables]), round-trips through JSON, and
// [Compare] sets two reports side by side.
//
// What only the command needs is not part of the library: it lives with
// it, in cmd/kvbench/internal: the HTML and PNG charts of a report
// (render) and the head-to-head of Strata and etcd on etcd's own
// benchmark tool, `kvbench versus` (versus).
package bench
