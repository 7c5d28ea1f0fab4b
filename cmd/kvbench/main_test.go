package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunThenReport runs a tiny engine benchmark writing JSON, HTML and
// PNG, then renders the JSON again with `kvbench report`.
func TestRunThenReport(t *testing.T) {
	dir := t.TempDir()
	js, page, pngs := filepath.Join(dir, "run.json"), filepath.Join(dir, "run.html"), filepath.Join(dir, "png")
	root := newRoot()
	root.SetArgs([]string{"run", "--mode=engine", "--backend=bbolt", "--workload=ycsb-a", "--records=500",
		"--ops=500", "--clients=2", "--json=" + js, "--html=" + page, "--png=" + pngs})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{js, page, filepath.Join(pngs, "ycsb-a-engine-nosync-cdf.png"), filepath.Join(pngs, "ycsb-a-engine-nosync-throughput.png")} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", p, err)
		}
	}
	again := filepath.Join(dir, "again.html")
	root = newRoot()
	root.SetArgs([]string{"report", js, "--html=" + again})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(again)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "<td>bbolt</td>") {
		t.Fatal("rendered report lacks charts or the table")
	}
}
