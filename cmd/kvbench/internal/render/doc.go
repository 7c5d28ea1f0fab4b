// Package render draws a bench.Report for `kvbench run` and `kvbench
// report`: one self-contained HTML page ([WriteHTML]) with each comparison
// table, a latency CDF and a throughput-over-time chart inlined as SVG, or
// the charts as PNG files ([WritePNG]).
package render
