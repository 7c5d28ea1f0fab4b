package render_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/strata-kv/strata/backends/bbolt"
	"github.com/strata-kv/strata/bench"
	"github.com/strata-kv/strata/cmd/kvbench/internal/render"
)

// smallReport runs two workloads on a real engine and reports them under
// two target names, so that tables and charts have several lines.
func smallReport(t *testing.T) *bench.Report {
	t.Helper()
	db, err := bbolt.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := &bench.EngineStore{Backend: db}
	cfg := bench.Config{Records: 1000, Clients: 4, Ops: 1000, Seed: 3, Keyspace: bench.Keyspace{ValueSize: 64}}
	ctx := context.Background()
	if _, err := bench.Load(ctx, s, cfg); err != nil {
		t.Fatal(err)
	}
	rep := bench.NewReport([]string{"kvbench", "test"})
	for _, name := range []string{"ycsb-a", "ycsb-c"} {
		w, err := bench.Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{"first", "second"} {
			res, err := bench.Run(ctx, s, w, cfg)
			if err != nil {
				t.Fatal(err)
			}
			rep.Runs = append(rep.Runs, bench.RunReport{Mode: "engine", Target: target, Workload: name,
				Durability: "nosync", Records: cfg.Records, ValueSize: 64, Clients: 4, Result: res, PeakRSS: 42 << 20})
		}
	}
	return rep
}

func TestWriteHTML(t *testing.T) {
	rep := smallReport(t)
	rep.Baseline = "second"
	var buf bytes.Buffer
	if err := render.WriteHTML(&buf, rep); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"<!DOCTYPE html>", "ycsb-a (engine, nosync)", "ycsb-c (engine, nosync)",
		"ratios vs second", "<th>peak RSS</th>", "<td>42.0 MiB</td>", "<td>first</td>", "<td>1.00x</td>",
		"latency CDF", "throughput over time",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Two charts per workload, inlined; nothing fetched or run.
	if n := strings.Count(page, "<svg"); n != 4 {
		t.Errorf("%d inline SVGs, want 4", n)
	}
	for _, bad := range []string{"<script", "<?xml", "<link", "src="} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	// The text tables carry the same rows.
	var tables bytes.Buffer
	rep.WriteTables(&tables, "second")
	if !strings.Contains(tables.String(), "peak RSS") || !strings.Contains(tables.String(), "42.0 MiB") {
		t.Errorf("tables lack peak RSS:\n%s", tables.String())
	}
}

func TestWritePNG(t *testing.T) {
	rep := smallReport(t)
	dir := t.TempDir()
	paths, err := render.WritePNG(rep, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 4 {
		t.Fatalf("wrote %v, want 4 files", paths)
	}
	for _, p := range paths {
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 200 {
			t.Errorf("%s: %v is too small", p, b)
		}
	}
}

// TestReportJSONRoundTrip renders a report read back from JSON, as
// `kvbench report` does: the histograms must survive.
func TestReportJSONRoundTrip(t *testing.T) {
	rep := smallReport(t)
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := bench.ReadReport(&js)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := render.WriteHTML(&buf, back); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "<svg"); n != 4 {
		t.Errorf("%d inline SVGs after a JSON round trip, want 4", n)
	}
}

// TestReportExtraSections renders a run with watch events, pauses and
// counts: the tables carry them, the CDF has a dashed watch line, and the
// throughput chart marks the pauses.
func TestReportExtraSections(t *testing.T) {
	ops, events := hdrhistogram.New(1, 60_000_000, 3), hdrhistogram.New(1, 60_000_000, 3)
	for i := range int64(1000) {
		ops.RecordValue(100 + i)
		events.RecordValue(500 + 2*i)
	}
	res := &bench.Result{Workload: "k8s", Elapsed: 3 * time.Second, Ops: 1000, OpsSec: 333,
		Total:  bench.OpResult{Op: "total", Count: 1000, P50: 600, Hist: ops.Export()},
		PerOp:  []bench.OpResult{{Op: "get", Count: 500}, {Op: "update", Count: 500}},
		Series: []int64{300, 340, 360, 0},
		Watch: &bench.WatchResult{Watchers: 4, Streams: 1, Events: 1000, Expected: 998, EventsSec: 333,
			Latency: bench.OpResult{Op: "watch", Count: 1000, P50: 1500, P99: 2480, Hist: events.Export()}},
		Pauses: []bench.Pause{{Kind: "compact", Revision: 1234, At: 1500 * time.Millisecond, Took: 12 * time.Millisecond,
			WorstOp: 15000, Ops: 3, OpsSec: 250, Before: bench.Disk{EngineSize: 8 << 20, DU: 9 << 20},
			After: bench.Disk{EngineSize: 6 << 20, DU: 7 << 20}}},
		OpsSecOutsidePauses: 334,
		Counts:              map[string]int64{"update conflicts": 7, "list pages": 12},
	}
	rep := bench.NewReport([]string{"kvbench", "test"})
	rep.Runs = []bench.RunReport{{Mode: "cluster", Target: "bbolt", Workload: "k8s", Durability: "raft-fsync", Result: res}}
	var tables bytes.Buffer
	rep.WriteTables(&tables, "")
	for _, want := range []string{"watch events: put to receipt", "compact @1234", "8.0 MiB → 6.0 MiB", "9.0 MiB → 7.0 MiB",
		"15000", "update conflicts", "list pages", "2480"} {
		if !strings.Contains(tables.String(), want) {
			t.Errorf("tables lack %q:\n%s", want, tables.String())
		}
	}
	var page bytes.Buffer
	if err := render.WriteHTML(&page, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<h3>pauses: compactions and defrags during the run</h3>", "<td>compact @1234</td>",
		"<th>events/s</th>", "<td>7</td>", "bbolt watch events", "compaction / defrag", "stroke-dasharray"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The new fields survive JSON.
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	back, err := bench.ReadReport(&js)
	if err != nil {
		t.Fatal(err)
	}
	r := back.Runs[0].Result
	if r.Watch == nil || r.Watch.Latency.Hist == nil || len(r.Pauses) != 1 || r.Pauses[0].Took != 12*time.Millisecond ||
		r.Counts["list pages"] != 12 {
		t.Fatalf("after a JSON round trip: %+v", r)
	}
}
