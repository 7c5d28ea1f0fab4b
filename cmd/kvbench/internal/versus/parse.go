package versus

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// BenchSummary is what etcd's benchmark tool (tools/benchmark, "bench")
// prints after a run.
type BenchSummary struct {
	Total     time.Duration
	ReqPerSec float64
	Average   time.Duration
	Slowest   time.Duration
	// Percentiles maps "50", "99", "99.9"... to the latency below which
	// that share of requests finished. The tool leaves out percentiles it
	// has too few samples for (99.9 below 1000 requests).
	Percentiles map[string]time.Duration
	// Errors is the tool's "Error distribution:": failed requests by
	// error message. Failed requests count in neither Requests/sec nor
	// the latencies.
	Errors map[string]int
}

// P99 is the 99th percentile latency, zero when absent.
func (s BenchSummary) P99() time.Duration { return s.Percentiles["99"] }

// Failed is the number of failed requests.
func (s BenchSummary) Failed() int {
	n := 0
	for _, c := range s.Errors {
		n += c
	}
	return n
}

func secs(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}

// BenchOutput is every summary etcd's benchmark tool printed, keyed by the
// heading above it. put, txn-put and range print one summary under no
// heading (""); watch-latency prints "Put summary" and "Watch events
// summary".
type BenchOutput map[string]BenchSummary

// ParseEtcdBenchOutput parses what etcd's benchmark tool writes to stdout:
// each "Summary:" block with its "Latency distribution:" and "Error
// distribution:", under the heading line ("Put summary:") before it. A
// block that failed every request has errors and no summary. It fails
// when the output holds neither a summary nor errors.
func ParseEtcdBenchOutput(r io.Reader) (BenchOutput, error) {
	out, _, err := parseBenchOutput(r)
	return out, err
}

// parseBenchOutput is ParseEtcdBenchOutput, also returning the headings
// in the order they appeared.
func parseBenchOutput(r io.Reader) (BenchOutput, []string, error) {
	sums := map[string]*BenchSummary{}
	var order []string
	section, mode := "", ""
	cur := func() *BenchSummary {
		s := sums[section]
		if s == nil {
			s = &BenchSummary{Percentiles: map[string]time.Duration{}}
			sums[section] = s
			order = append(order, section)
		}
		return s
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		switch {
		case line == "":
		case line == "Summary:":
			cur()
			mode = "summary"
		case line == "Response time histogram:":
			mode = "histogram"
		case line == "Latency distribution:":
			mode = "latency"
		case line == "Error distribution:":
			cur()
			mode = "errors"
		case raw == line && strings.HasSuffix(line, ":"):
			// An unindented heading: "Put summary:", "Watch events summary:".
			section, mode = strings.TrimSuffix(line, ":"), ""
		case mode == "summary":
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSuffix(strings.TrimSpace(v), "secs.")
			s := cur()
			var err error
			switch k {
			case "Total":
				s.Total, err = secs(v)
			case "Average":
				s.Average, err = secs(v)
			case "Slowest":
				s.Slowest, err = secs(v)
			case "Requests/sec":
				s.ReqPerSec, err = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
			if err != nil {
				return nil, nil, fmt.Errorf("bench: parse %q: %w", line, err)
			}
		case mode == "latency":
			// "99% in 0.0212 secs."
			pct, rest, ok := strings.Cut(line, "% in ")
			if !ok {
				continue
			}
			d, err := secs(strings.TrimSuffix(rest, "secs."))
			if err != nil {
				return nil, nil, fmt.Errorf("bench: parse %q: %w", line, err)
			}
			cur().Percentiles[pct] = d
		case mode == "errors":
			// "[12]\tetcdserver: mvcc: database space exceeded"
			if n, msg, ok := strings.Cut(strings.TrimPrefix(line, "["), "]"); ok && strings.HasPrefix(line, "[") {
				c, err := strconv.Atoi(n)
				if err != nil {
					return nil, nil, fmt.Errorf("bench: parse %q: %w", line, err)
				}
				s := cur()
				if s.Errors == nil {
					s.Errors = map[string]int{}
				}
				s.Errors[strings.TrimSpace(msg)] += c
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	out := BenchOutput{}
	for _, k := range order {
		s := sums[k]
		if s.ReqPerSec == 0 && len(s.Errors) == 0 {
			return nil, nil, fmt.Errorf("bench: summary %q without Requests/sec", k)
		}
		out[k] = *s
	}
	if len(out) == 0 {
		return nil, nil, errors.New("bench: no summary with Requests/sec in the benchmark output")
	}
	return out, order, nil
}

// ParseEtcdBench parses the summary etcd's benchmark tool writes to
// stdout: the "Summary:" block and the "Latency distribution:" block. For
// output with several summaries it returns the one under no heading, or
// else the first.
func ParseEtcdBench(r io.Reader) (BenchSummary, error) {
	out, order, err := parseBenchOutput(r)
	if err != nil {
		return BenchSummary{}, err
	}
	s, ok := out[""]
	if !ok {
		s = out[order[0]]
	}
	if s.ReqPerSec == 0 {
		return s, errors.New("bench: no summary with Requests/sec in the benchmark output")
	}
	return s, nil
}

var (
	grpcLogLine  = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR): `)
	progressBar  = regexp.MustCompile(`\d+ / \d+ \[[-_>=]*\] *[\d.]+% (\?|[\d.]+) p/s`)
	benchErrLine = regexp.MustCompile(`(?i)error|fail|panic|warn|timeout|refused`)
)

// clientLogLine renders a JSON log line of etcd's client ({"level":"warn",
// "msg":...}) without its timestamp and target, so repeats count as one;
// ok is false for other lines and for info and debug levels.
func clientLogLine(line string) (string, bool) {
	var l struct {
		Level, Msg, Method, Error string
	}
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &l) != nil || l.Msg == "" {
		return "", false
	}
	if l.Level == "info" || l.Level == "debug" {
		return "", false
	}
	out := l.Level + ": " + l.Msg
	if l.Error != "" {
		out += ": " + l.Error
	}
	if l.Method != "" {
		out += " (" + l.Method + ")"
	}
	return out, true
}

// benchStderr picks the benchmark tool's warnings and errors out of its
// stderr: gRPC's log lines other than INFO (INFO's JSON continuation lines
// left out), etcd client's JSON log lines above info, and other lines that
// look like errors. The progress bar is dropped. Repeated lines are
// counted, and at most maxLines kept.
func benchStderr(s string, maxLines int) []string {
	counts := map[string]int{}
	var order []string
	inInfo := false
	for _, line := range strings.Split(s, "\n") {
		// The progress bar is redrawn on the same line, and log lines
		// follow it there.
		if i := strings.LastIndexByte(line, '\r'); i >= 0 {
			line = line[i+1:]
		}
		line = strings.TrimRight(progressBar.ReplaceAllString(line, ""), " \t")
		if inInfo {
			// The JSON an INFO line ends with: indented, up to an
			// unindented "}".
			if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "}") {
				inInfo = !strings.HasPrefix(line, "}")
				continue
			}
			inInfo = false
		}
		if m := grpcLogLine.FindStringSubmatch(line); m != nil {
			if m[1] == "INFO" {
				inInfo = strings.HasSuffix(line, "{")
				continue
			}
			line = line[len("2006/01/02 15:04:05 "):]
		} else if line = strings.TrimSpace(line); line == "" {
			continue
		} else if l, ok := clientLogLine(line); ok {
			line = l
		} else if strings.HasPrefix(line, "{") || !benchErrLine.MatchString(line) {
			continue
		}
		if counts[line] == 0 {
			order = append(order, line)
		}
		counts[line]++
	}
	var out []string
	for _, l := range order {
		if len(out) == maxLines {
			out = append(out, fmt.Sprintf("(%d more distinct lines left out)", len(order)-maxLines))
			break
		}
		if c := counts[l]; c > 1 {
			l = fmt.Sprintf("%s (x%d)", l, c)
		}
		out = append(out, l)
	}
	return out
}
