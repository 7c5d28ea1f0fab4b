package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Report is what a kvbench invocation produces: every run it made, with
// enough context to compare it with another report later.
type Report struct {
	Started   time.Time `json:"started"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	// Args is the command line, for the record.
	Args []string    `json:"args"`
	Runs []RunReport `json:"runs"`
	// Baseline is the target ratios are computed against in rendered
	// reports (the first target of a table when empty or absent).
	Baseline string `json:"baseline,omitempty"`
}

// NewReport returns an empty report stamped with the environment.
func NewReport(args []string) *Report {
	return &Report{Started: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Args: args}
}

// RunReport is one workload against one target.
type RunReport struct {
	Mode       string  `json:"mode"`
	Target     string  `json:"target"` // engine name or endpoint label
	Workload   string  `json:"workload"`
	Durability string  `json:"durability"`
	Records    uint64  `json:"records"`
	ValueSize  int     `json:"value_size"`
	Clients    int     `json:"clients"`
	LoadSecs   float64 `json:"load_seconds,omitempty"`
	Result     *Result `json:"result"`
	Disk       Disk    `json:"disk"`
	// PeakRSS is the highest resident set size seen during the run, in
	// bytes, of the process serving it (kvbench itself in the in-process
	// modes); zero when unknown.
	PeakRSS int64 `json:"peak_rss,omitempty"`
	// PeakAnon is the highest anonymous part of it (heap, stacks),
	// without the pages of mapped files (the executable, an mmapped
	// database) that the page cache shares.
	PeakAnon int64 `json:"peak_anon,omitempty"`
}

// Disk records space used by a target, where the mode can see it.
type Disk struct {
	// EngineSize and EngineInUse are the engine's own figures.
	EngineSize  int64 `json:"engine_size,omitempty"`
	EngineInUse int64 `json:"engine_in_use,omitempty"`
	// DU is the allocated size of the data directory, as du reports.
	DU int64 `json:"du,omitempty"`
	// AfterDefrag is DU after a defrag, when one was run.
	AfterDefrag int64 `json:"du_after_defrag,omitempty"`
}

// DU returns the bytes allocated to the files under dir, as `du -s` counts.
func DU(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	return total, err
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("bench: read report: %w", err)
	}
	return &r, nil
}

// Table is one comparison table: the runs of one workload, mode and
// durability, with ratios against a baseline run.
type Table struct {
	Key      string // workload-mode-durability, for file names
	Title    string
	Sub      string
	Runs     []RunReport
	Header   []string
	Rows     [][]string
	OpHeader []string
	OpRows   [][]string
	// Extra are the tables of what some workloads measure besides their
	// operations: watch events, pauses, counts.
	Extra []TableSection
}

// TableSection is one extra table of a Table.
type TableSection struct {
	Title  string
	Header []string
	Rows   [][]string
}

// Tables returns the comparison tables of the report, one per workload
// (and mode and durability), with ratios against baseline (a target name;
// the first target when empty or absent): what WriteTables prints and the
// HTML report shows.
func (r *Report) Tables(baseline string) []*Table {
	var groups []*Table
	byKey := map[string]*Table{}
	for _, run := range r.Runs {
		key := run.Workload + " (" + run.Mode + ", " + run.Durability + ")"
		g := byKey[key]
		if g == nil {
			g = &Table{Key: run.Workload + "-" + run.Mode + "-" + run.Durability, Title: key}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.Runs = append(g.Runs, run)
	}
	for _, g := range groups {
		base := g.Runs[0]
		for _, run := range g.Runs {
			if run.Target == baseline {
				base = run
			}
		}
		size := fmt.Sprintf("%d B", base.ValueSize)
		if w, err := Preset(base.Workload); err == nil && w.Kind == KindK8s {
			size = "Kubernetes objects (320 B to 4 KiB)"
		}
		g.Sub = fmt.Sprintf("%d records × %s, %d clients; ratios vs %s", base.Records, size, base.Clients, base.Target)
		g.Header = []string{"target", "ops/s", "ratio", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "errors", "engine size", "du", "peak RSS", "peak anon"}
		for _, run := range g.Runs {
			res := run.Result
			ratio := res.OpsSec / base.Result.OpsSec
			g.Rows = append(g.Rows, []string{run.Target, fmt.Sprintf("%.0f", res.OpsSec), fmt.Sprintf("%.2fx", ratio),
				fmt.Sprint(res.Total.P50), fmt.Sprint(res.Total.P99), fmt.Sprint(res.Total.P999), fmt.Sprint(res.Total.Max),
				fmt.Sprint(res.Errors), FormatBytes(run.Disk.EngineSize), FormatBytes(run.Disk.DU), FormatBytes(run.PeakRSS), FormatBytes(run.PeakAnon)})
		}
		g.Extra = extraSections(g.Runs)
		if len(base.Result.PerOp) > 1 {
			g.OpHeader = []string{"per op", "op", "ops/s", "p50 µs", "p99 µs", "p99.9 µs"}
			for _, run := range g.Runs {
				for _, o := range run.Result.PerOp {
					g.OpRows = append(g.OpRows, []string{run.Target, o.Op, fmt.Sprintf("%.0f", o.OpsSec),
						fmt.Sprint(o.P50), fmt.Sprint(o.P99), fmt.Sprint(o.P999)})
				}
			}
		}
	}
	return groups
}

// WriteTables prints one comparison table per workload (and durability),
// with ratios against baseline (a target name; the first target when empty
// or absent).
func (r *Report) WriteTables(w io.Writer, baseline string) {
	for _, g := range r.Tables(baseline) {
		fmt.Fprintf(w, "\n%s — %s\n", g.Title, g.Sub)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(g.Header, "\t")+"\t")
		for _, row := range g.Rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
		if len(g.OpRows) > 0 {
			writeIndented(w, g.OpHeader, g.OpRows)
		}
		for _, sec := range g.Extra {
			fmt.Fprintf(w, "  %s\n", sec.Title)
			writeIndented(w, sec.Header, sec.Rows)
		}
	}
}

// writeIndented prints a table indented under its group's.
func writeIndented(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  "+strings.Join(header, "\t")+"\t")
	for _, row := range rows {
		fmt.Fprintln(tw, "  "+strings.Join(row, "\t")+"\t")
	}
	tw.Flush()
}

// extraSections returns the tables of the runs' watch events, pauses and
// counts, those they have.
func extraSections(runs []RunReport) []TableSection {
	var out []TableSection
	watch := TableSection{Title: "watch events: put to receipt",
		Header: []string{"target", "watchers", "streams", "events", "expected", "events/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "lagging", "created/s", "canceled/s", "RSS/watcher", "progress p50 µs", "progress max µs", "no progress",
			"notify gap p50 ms", "notify gap max ms", "no notify"}}
	pauses := TableSection{Title: "pauses: compactions and defrags during the run",
		Header: []string{"target", "pause", "at s", "took ms", "worst op µs", "ops during", "ops/s during", "ops/s otherwise",
			"engine size before → after", "in use before → after", "du before → after", "error"}}
	counts := TableSection{Title: "counts"}
	var countNames []string
	for _, run := range runs {
		for name := range run.Result.Counts {
			if !slices.Contains(countNames, name) {
				countNames = append(countNames, name)
			}
		}
	}
	sort.Strings(countNames)
	counts.Header = append([]string{"target"}, countNames...)
	for _, run := range runs {
		res := run.Result
		if w := res.Watch; w != nil {
			l := w.Latency
			row := []string{run.Target, fmt.Sprint(w.Watchers), fmt.Sprint(w.Streams),
				fmt.Sprint(w.Events), fmt.Sprint(w.Expected), fmt.Sprintf("%.0f", w.EventsSec),
				fmt.Sprint(l.P50), fmt.Sprint(l.P99), fmt.Sprint(l.P999), fmt.Sprint(l.Max), fmt.Sprint(w.Lagging),
				fmt.Sprintf("%.0f", w.CreatedSec), fmt.Sprintf("%.0f", w.CanceledSec), FormatBytes(w.RSSPerWatcher),
				fmt.Sprint(w.Progress.P50), fmt.Sprint(w.Progress.Max), fmt.Sprint(w.ProgressTimeouts)}
			if g := w.NotifyGaps; g != nil {
				row = append(row, fmt.Sprintf("%.0f", float64(g.P50)/1000), fmt.Sprintf("%.0f", float64(g.Max)/1000), fmt.Sprint(w.NotifyMissing))
			} else {
				row = append(row, "-", "-", "-")
			}
			watch.Rows = append(watch.Rows, row)
		}
		for _, p := range res.Pauses {
			name := p.Kind
			if p.Target != "" {
				name += " " + p.Target
			}
			if p.Revision > 0 {
				name += fmt.Sprintf(" @%d", p.Revision)
			}
			pauses.Rows = append(pauses.Rows, []string{run.Target, name, fmt.Sprintf("%.1f", p.At.Seconds()),
				fmt.Sprintf("%.1f", float64(p.Took)/float64(time.Millisecond)), fmt.Sprint(p.WorstOp), fmt.Sprint(p.Ops),
				fmt.Sprintf("%.0f", p.OpsSec), fmt.Sprintf("%.0f", res.OpsSecOutsidePauses),
				FormatBytes(p.Before.EngineSize) + " → " + FormatBytes(p.After.EngineSize),
				FormatBytes(p.Before.EngineInUse) + " → " + FormatBytes(p.After.EngineInUse),
				FormatBytes(p.Before.DU) + " → " + FormatBytes(p.After.DU), orDash(p.Error)})
		}
		if len(res.Counts) > 0 {
			row := []string{run.Target}
			for _, name := range countNames {
				row = append(row, fmt.Sprint(res.Counts[name]))
			}
			counts.Rows = append(counts.Rows, row)
		}
	}
	for _, sec := range []TableSection{watch, pauses, counts} {
		if len(sec.Rows) > 0 {
			out = append(out, sec)
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// FormatBytes renders a byte count as the tables print it, in binary
// units with one decimal ("1.5 MiB"), or "-" for none.
func FormatBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

// Compare prints, for every run present in both reports (same mode, target,
// workload and durability), b's figures as ratios of a's. Reports of one
// target each (say, endpoints runs labelled etcd and strata) are matched
// on mode, workload and durability alone.
func Compare(w io.Writer, a, b *Report) {
	withTarget := len(targets(a)) != 1 || len(targets(b)) != 1
	key := func(r RunReport) string {
		if withTarget {
			return strings.Join([]string{r.Mode, r.Target, r.Workload, r.Durability}, "/")
		}
		return strings.Join([]string{r.Mode, r.Workload, r.Durability}, "/")
	}
	old := map[string]RunReport{}
	for _, r := range a.Runs {
		old[key(r)] = r
	}
	var keys []string
	matched := map[string]RunReport{}
	for _, r := range b.Runs {
		if _, ok := old[key(r)]; ok {
			keys = append(keys, key(r))
			matched[key(r)] = r
		}
	}
	sort.Strings(keys)
	head := "mode/target/workload/durability"
	if !withTarget {
		head = fmt.Sprintf("mode/workload/durability (a: %s, b: %s)", targets(a)[0], targets(b)[0])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, head+"\tops/s a\tops/s b\tb/a\tp99 a\tp99 b\tb/a\t")
	for _, k := range keys {
		ra, rb := old[k].Result, matched[k].Result
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2fx\t%d\t%d\t%.2fx\t\n", k, ra.OpsSec, rb.OpsSec, rb.OpsSec/ra.OpsSec,
			ra.Total.P99, rb.Total.P99, float64(rb.Total.P99)/float64(max(ra.Total.P99, 1)))
	}
	tw.Flush()
	if len(keys) == 0 {
		fmt.Fprintln(w, "no run appears in both reports")
	}
}

// targets returns the distinct targets of r's runs.
func targets(r *Report) []string {
	var out []string
	for _, run := range r.Runs {
		if !slices.Contains(out, run.Target) {
			out = append(out, run.Target)
		}
	}
	return out
}
