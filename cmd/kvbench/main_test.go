package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-kv/strata/bench"
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

// TestRunEtcdWorkloads runs the workloads that need etcd's requests in
// cluster mode, tiny, and checks that the report carries their watch
// events and pauses; engine mode refuses them.
func TestRunEtcdWorkloads(t *testing.T) {
	dir := t.TempDir()
	js := filepath.Join(dir, "run.json")
	root := newRoot()
	root.SetArgs([]string{"run", "--mode=cluster", "--backend=bbolt", "--workload=k8s,watch-latency,defrag",
		"--records=300", "--duration=600ms", "--clients=2", "--watchers=4", "--compact-interval=200ms", "--json=" + js})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(js)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rep, err := bench.ReadReport(fh)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 3 {
		t.Fatalf("%d runs, want 3", len(rep.Runs))
	}
	for _, run := range rep.Runs {
		res := run.Result
		if res.Errors != 0 {
			t.Errorf("%s: %d errors (%s)", run.Workload, res.Errors, res.FirstError)
		}
		if run.Disk.EngineSize <= 0 || run.Disk.DU <= 0 || run.PeakRSS <= 0 {
			t.Errorf("%s: disk %+v, peak RSS %d", run.Workload, run.Disk, run.PeakRSS)
		}
		switch run.Workload {
		case "k8s", "watch-latency":
			if res.Watch == nil || res.Watch.Events == 0 {
				t.Errorf("%s: watch %+v", run.Workload, res.Watch)
			}
		case "defrag":
			if len(res.Pauses) < 2 || run.Disk.AfterDefrag <= 0 {
				t.Errorf("defrag: pauses %+v, disk %+v", res.Pauses, run.Disk)
			}
		}
	}

	root = newRoot()
	root.SetArgs([]string{"run", "--mode=engine", "--backend=bbolt", "--workload=k8s", "--records=10"})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "needs etcd") {
		t.Fatalf("k8s in engine mode: %v", err)
	}
}

// TestVersusRejectsFlags checks versus's flags before it starts anything.
func TestVersusRejectsFlags(t *testing.T) {
	bins := []string{"--etcd=/nonexistent/etcd", "--strata=/nonexistent/strata", "--bench=/nonexistent/bench"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"versus"}, "--etcd is required"},
		{append([]string{"versus", "--nodes=2"}, bins...), "--nodes=2: 1 or 3"},
		{append([]string{"versus", "--workload=put,range"}, bins...), `unknown "range"`},
	} {
		root := newRoot()
		root.SetArgs(tc.args)
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
