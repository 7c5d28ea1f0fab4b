// Package versus runs Strata against etcd on etcd's own benchmark tool
// (tools/benchmark), for `kvbench versus`.
//
// [Run] starts a fresh etcd cluster and a fresh Strata cluster as
// processes (proc.go), one at a time, runs one of the tool's commands
// against each ([Workload], with the bar Strata must meet), alternating
// which goes first from round to round. It parses the tool's output and
// picks its warnings out of its stderr (parse.go). The [Result] gives the
// median of the per-round Strata/etcd ratios (stats.go) and prints as
// tables or JSON (output.go).
package versus
