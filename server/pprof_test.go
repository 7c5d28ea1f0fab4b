package server_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/strata-kv/strata/server"
)

// TestPprofMutexProfile checks --enable-pprof as etcd's: the profiles are
// served, and the mutex profile samples 1 contention in 5 unless the
// process set a rate already.
func TestPprofMutexProfile(t *testing.T) {
	prev := runtime.SetMutexProfileFraction(0)
	defer runtime.SetMutexProfileFraction(prev)
	c := newCluster(t, 1, engines()[0], func(cfg *server.Config) { cfg.EnablePprof = true })
	base := c.members[0].ClientURLs()[0]
	if got := runtime.SetMutexProfileFraction(-1); got != 5 {
		t.Fatalf("mutex profile fraction %d after start, etcd's is 5", got)
	}
	for p, want := range map[string]string{
		"/debug/pprof/mutex?debug=1":     "sampling period=5",
		"/debug/pprof/heap?debug=1":      "heap profile:",
		"/debug/pprof/goroutine?debug=1": "goroutine profile:",
	} {
		if code, body := httpGet(t, base+p); code != 200 || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %.100s", p, code, body)
		}
	}
}
