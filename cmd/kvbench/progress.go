package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/strata-kv/strata/bench"
)

// progress draws one bar per run on stderr when stderr is a terminal, and
// nothing otherwise (pipes, CI logs).
type progress struct {
	p *mpb.Progress // nil: not a terminal
}

func newProgress() *progress {
	st, err := os.Stderr.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return &progress{}
	}
	return &progress{p: mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))}
}

// log is where status lines go: above the bars while they are drawn.
func (pr *progress) log() io.Writer {
	if pr.p == nil {
		return os.Stderr
	}
	return pr.p
}

// wait waits for the bars to finish drawing.
func (pr *progress) wait() {
	if pr.p != nil {
		pr.p.Wait()
	}
}

// bar returns cfg with a Progress callback drawing a bar for one run, and a
// function to call with the result when the run ends. The bar fills with operations when
// the run is bounded by --ops and with time otherwise, and shows the
// operations done and their rate (an EWMA of the per-second rates).
func (pr *progress) bar(cfg bench.Config, name string) (bench.Config, func(*bench.Result)) {
	if pr.p == nil {
		return cfg, func(*bench.Result) {}
	}
	byOps := cfg.Ops > 0
	total := int64(cfg.Ops)
	if !byOps {
		total = cfg.Duration.Milliseconds()
	}
	total = max(total, 1)
	var (
		mu    sync.Mutex
		done  uint64
		rate  float64
		lastN uint64
		lastT time.Duration
	)
	b := pr.p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			mu.Lock()
			defer mu.Unlock()
			return fmt.Sprintf("%d ops  %.0f ops/s", done, rate)
		}, decor.WCSyncSpace)),
	)
	cfg.Progress = func(n uint64, elapsed time.Duration) {
		mu.Lock()
		if dt := (elapsed - lastT).Seconds(); dt > 0 {
			r := float64(n-lastN) / dt
			if lastT == 0 {
				rate = r
			} else {
				rate = 0.3*r + 0.7*rate
			}
		}
		done, lastN, lastT = n, n, elapsed
		mu.Unlock()
		if byOps {
			b.SetCurrent(int64(n))
		} else {
			b.SetCurrent(min(elapsed.Milliseconds(), total))
		}
	}
	// At the end the bar shows the run's totals: all operations and their
	// average rate.
	return cfg, func(res *bench.Result) {
		if res != nil {
			mu.Lock()
			done, rate = uint64(res.Ops), res.OpsSec
			mu.Unlock()
		}
		b.SetTotal(-1, true)
	}
}
