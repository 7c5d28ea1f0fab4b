package server_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestEtcdBenchmarkTool runs etcd's benchmark tool (tools/benchmark,
// v3.7) against a one-member cluster: put, range, txn-put and
// watch-latency with small totals must exit 0 and print no errors. It
// runs when STRATA_ETCD_BENCH names the binary.
func TestEtcdBenchmarkTool(t *testing.T) {
	bin := os.Getenv("STRATA_ETCD_BENCH")
	if bin == "" {
		t.Skip("STRATA_ETCD_BENCH is not set: set it to etcd's benchmark binary (v3.7) to run this test")
	}
	c := newCluster(t, 1, engines()[0], nil)
	ep := c.endpoint(0)
	// The tool prints a histogram; failed requests appear as an
	// "Error distribution:" section with one line per error. gRPC's
	// INFO log lines (and the JSON they print) are left out of the check.
	errLine := regexp.MustCompile(`(?i)error|failed|panic`)
	grpcInfo := regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d INFO: `)
	for _, args := range [][]string{
		{"put", "--total=200", "--key-size=8", "--val-size=16", "--key-space-size=50"},
		{"range", "bench-key", "--total=200"},
		{"range", "bench-key", "--total=100", "--consistency=s"},
		{"txn-put", "--total=200", "--txn-ops=4", "--key-space-size=100"},
		{"watch-latency", "--put-total=50", "--put-rate=100", "--streams=2", "--watchers-per-stream=3"},
	} {
		t.Run(args[0], func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"--endpoints=" + ep, "--clients=4", "--conns=2"}, args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
			var bad []string
			inJSON := false
			for _, line := range strings.Split(string(out), "\n") {
				switch {
				case grpcInfo.MatchString(line):
					inJSON = strings.HasSuffix(line, "{")
				case inJSON:
					inJSON = !strings.HasPrefix(line, "}")
				case errLine.MatchString(line):
					bad = append(bad, line)
				}
			}
			if bad != nil {
				t.Fatalf("%s: errors in the output: %q\n%s", strings.Join(args, " "), bad, out)
			}
			summary := string(out)
			if i := strings.Index(summary, "Summary:"); i >= 0 {
				summary = summary[i:]
			}
			t.Logf("%s:\n%s", strings.Join(args, " "), summary)
		})
	}
}
