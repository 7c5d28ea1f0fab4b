package render

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/strata-kv/strata/bench"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// chart sizes, for SVG and PNG alike.
const (
	chartW = 16 * vg.Centimeter
	chartH = 10 * vg.Centimeter
)

// latencyCDF plots, per run, the cumulative share of operations (y, %)
// finished within a latency (x, log scale), and, dashed, that of the watch
// events received within a delay of their put. Runs without a histogram
// are skipped; nil is returned when no run has one.
func latencyCDF(title string, runs []bench.RunReport) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title + ": latency CDF"
	p.X.Label.Text = "latency (µs, log scale)"
	p.Y.Label.Text = "operations finished within (percentile)"
	for _, run := range runs {
		if run.Result != nil && run.Result.Watch != nil {
			p.Y.Label.Text = "operations / events within (percentile)"
		}
	}
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	// The percentile axis counts nines, so the tail (p99, p99.9...) gets
	// as much room as the median; it goes as far as the largest run has
	// samples to resolve (at most 99.999).
	var most int64
	for _, run := range runs {
		if run.Result != nil {
			most = max(most, run.Result.Total.Count)
			if w := run.Result.Watch; w != nil {
				most = max(most, w.Latency.Count)
			}
		}
	}
	ns := ninesScale{nines: math.Min(5, math.Max(2, math.Ceil(math.Log10(float64(max(most, 1))))))}
	p.Y.Scale = ns
	p.Y.Tick.Marker = ns
	p.Y.Min, p.Y.Max = 0, 100
	p.Legend.Top = false
	p.Legend.Left = false
	p.Legend.XOffs = -4
	p.Legend.YOffs = 4
	p.Add(plotter.NewGrid())
	lines := 0
	for i, run := range runs {
		if run.Result == nil {
			continue
		}
		type curve struct {
			snap   *hdrhistogram.Snapshot
			label  string
			dashed bool
		}
		curves := []curve{{run.Result.Total.Hist, run.Target, false}}
		if w := run.Result.Watch; w != nil {
			curves = append(curves, curve{w.Latency.Hist, run.Target + " watch events", true})
		}
		for _, c := range curves {
			pts := cdfPoints(c.snap)
			if pts == nil {
				continue
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return nil, err
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(1.5)
			if c.dashed {
				l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(c.label, l)
			lines++
		}
	}
	if lines == 0 {
		return nil, nil
	}
	return p, nil
}

// cdfPoints returns one point per non-empty bucket of a histogram: the
// bucket's upper bound, and the share of values at or below it; nil for
// an empty or absent histogram.
func cdfPoints(snap *hdrhistogram.Snapshot) plotter.XYs {
	if snap == nil {
		return nil
	}
	h := hdrhistogram.Import(snap)
	if h.TotalCount() == 0 {
		return nil
	}
	total := float64(h.TotalCount())
	var pts plotter.XYs
	var cum int64
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		if len(pts) == 0 {
			pts = append(pts, plotter.XY{X: math.Max(float64(b.From), 1), Y: 0})
		}
		cum += b.Count
		pts = append(pts, plotter.XY{X: math.Max(float64(b.To), 1), Y: 100 * float64(cum) / total})
	}
	return pts
}

// throughput plots, per run, the operations finished in each second.
func throughput(title string, runs []bench.RunReport) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title + ": throughput over time"
	p.X.Label.Text = "time (s)"
	p.Y.Label.Text = "ops/s"
	p.Y.Min = 0
	// The legend sits top right, in headroom left above the highest line.
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.XOffs = -4
	p.Legend.YOffs = -4
	var peak float64
	p.Y.Tick.Marker = plot.TickerFunc(func(min, max float64) []plot.Tick {
		ts := plot.DefaultTicks{}.Ticks(min, max)
		for i := range ts {
			if ts[i].Label != "" {
				ts[i].Label = siString(ts[i].Value)
			}
		}
		return ts
	})
	p.Add(plotter.NewGrid())
	lines := 0
	for i, run := range runs {
		if run.Result == nil || len(run.Result.Series) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(run.Result.Series))
		for s, n := range run.Result.Series {
			pts[s] = plotter.XY{X: float64(s + 1), Y: float64(n)}
		}
		// The last second is usually partial; drop it unless it is all there is.
		if len(pts) > 1 {
			pts = pts[:len(pts)-1]
		}
		for _, pt := range pts {
			peak = math.Max(peak, pt.Y)
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		sc.Color = l.Color
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(2)
		p.Add(l, sc)
		p.Legend.Add(run.Target, l, sc)
		lines++
	}
	if lines == 0 {
		return nil, nil
	}
	p.Y.Max = peak * (1.15 + 0.08*float64(lines))
	// Pauses (compactions, defrags) are dashed lines in their run's
	// colour, at the time they began.
	dashes := []vg.Length{vg.Points(3), vg.Points(3)}
	marked := false
	for i, run := range runs {
		if run.Result == nil {
			continue
		}
		for _, ps := range run.Result.Pauses {
			x := ps.At.Seconds()
			l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: p.Y.Max}})
			if err != nil {
				return nil, err
			}
			l.Color = plotutil.Color(i)
			l.Width = vg.Points(0.75)
			l.Dashes = dashes
			p.Add(l)
			if !marked {
				key := &plotter.Line{LineStyle: draw.LineStyle{Color: color.Gray{Y: 110}, Width: vg.Points(0.75), Dashes: dashes}}
				p.Legend.Add("compaction / defrag", key)
				marked = true
			}
		}
	}
	return p, nil
}

// ninesScale maps a percentile q in [0, 100] to the number of nines in it,
// -log10(1-q/100), capped at nines.
type ninesScale struct{ nines float64 }

func (s ninesScale) f(q float64) float64 {
	return -math.Log10(math.Max(1-q/100, math.Pow(10, -s.nines)))
}

// Normalize implements plot.Normalizer.
func (s ninesScale) Normalize(min, max, x float64) float64 {
	lo, hi := s.f(min), s.f(max)
	if hi == lo {
		return 0
	}
	return (s.f(x) - lo) / (hi - lo)
}

// Ticks implements plot.Ticker.
func (s ninesScale) Ticks(min, max float64) []plot.Tick {
	ts := []plot.Tick{{Value: 0, Label: "0"}, {Value: 50, Label: "50"}}
	q, label := 90.0, "90"
	for n := 1.0; n <= s.nines; n++ {
		ts = append(ts, plot.Tick{Value: q, Label: label})
		q = 100 - (100-q)/10
		if n == 1 {
			label = "99"
		} else {
			label += "9"
			if n == 2 {
				label = "99.9"
			}
		}
	}
	var in []plot.Tick
	for _, t := range ts {
		if t.Value >= min && t.Value <= max {
			in = append(in, t)
		}
	}
	return in
}

func siString(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strings.TrimSuffix(fmt.Sprintf("%.2f", v/1e6), ".00") + "M"
	case a >= 1e3:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/1e3), ".0") + "k"
	default:
		return fmt.Sprintf("%g", v)
	}
}

// chartSet is the charts of one table group.
type chartSet struct {
	group *bench.Table
	cdf   *plot.Plot
	tput  *plot.Plot
}

func charts(r *bench.Report, baseline string) ([]chartSet, error) {
	var out []chartSet
	for _, g := range r.Tables(baseline) {
		cdf, err := latencyCDF(g.Title, g.Runs)
		if err != nil {
			return nil, err
		}
		tp, err := throughput(g.Title, g.Runs)
		if err != nil {
			return nil, err
		}
		out = append(out, chartSet{group: g, cdf: cdf, tput: tp})
	}
	return out, nil
}

var xmlHeader = regexp.MustCompile(`(?s)^.*?(<svg)`)

func renderSVG(p *plot.Plot) (template.HTML, error) {
	if p == nil {
		return "", nil
	}
	wt, err := p.WriterTo(chartW, chartH, "svg")
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return "", err
	}
	// Drop the XML prolog: the SVG is inlined in HTML.
	return template.HTML(xmlHeader.ReplaceAllString(buf.String(), "$1")), nil
}

type htmlGroup struct {
	Title   string
	Sub     string
	Header  []string
	Rows    [][]string
	OpHdr   []string
	OpRows  [][]string
	Extra   []bench.TableSection
	CDF     template.HTML
	Through template.HTML
}

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>kvbench report</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.charts svg{max-width:100%;height:auto;margin-right:1em}
.meta{color:#666;font-size:.9em}
h3{font-size:1em;margin:.8em 0 .2em}
</style></head><body>
<h1>kvbench report</h1>
<p class="meta">started {{.Started}} · {{.GoVersion}} · {{.CPUs}} CPUs<br><code>{{.Args}}</code></p>
{{range .Groups}}
<h2>{{.Title}}</h2>
<p class="meta">{{.Sub}}</p>
<table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{if .OpRows}}<table><tr>{{range .OpHdr}}<th>{{.}}</th>{{end}}</tr>
{{range .OpRows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
{{range .Extra}}<h3>{{.Title}}</h3>
<table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{end}}<div class="charts">{{.CDF}}{{.Through}}</div>
{{end}}
</body></html>
`))

// WriteHTML writes the report as one self-contained HTML page (no scripts,
// no remote assets): per workload, the comparison table with ratios against
// r.Baseline (as r.WriteTables), a latency CDF and a throughput-over-time chart,
// inlined as SVG.
func WriteHTML(w io.Writer, r *bench.Report) error {
	sets, err := charts(r, r.Baseline)
	if err != nil {
		return err
	}
	data := struct {
		Started         string
		GoVersion, Args string
		CPUs            int
		Groups          []htmlGroup
	}{Started: r.Started.Format("2006-01-02 15:04:05 MST"), GoVersion: r.GoVersion, CPUs: r.CPUs,
		Args: strings.Join(r.Args, " ")}
	for _, s := range sets {
		g := s.group
		hg := htmlGroup{Title: g.Title, Sub: g.Sub, Header: g.Header, Rows: g.Rows, OpHdr: g.OpHeader, OpRows: g.OpRows, Extra: g.Extra}
		if hg.CDF, err = renderSVG(s.cdf); err != nil {
			return err
		}
		if hg.Through, err = renderSVG(s.tput); err != nil {
			return err
		}
		data.Groups = append(data.Groups, hg)
	}
	return htmlTmpl.Execute(w, data)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// WritePNG writes the report's charts as PNG files into dir (created if
// needed), two per workload: <workload>-cdf.png and <workload>-throughput.png.
// It returns the paths written.
func WritePNG(r *bench.Report, dir string) ([]string, error) {
	sets, err := charts(r, r.Baseline)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	for _, s := range sets {
		base := strings.Trim(unsafeName.ReplaceAllString(s.group.Key, "-"), "-")
		for _, c := range []struct {
			p      *plot.Plot
			suffix string
		}{{s.cdf, "-cdf.png"}, {s.tput, "-throughput.png"}} {
			if c.p == nil {
				continue
			}
			path := filepath.Join(dir, base+c.suffix)
			if err := c.p.Save(chartW, chartH, path); err != nil {
				return paths, err
			}
			paths = append(paths, path)
		}
	}
	return paths, nil
}
