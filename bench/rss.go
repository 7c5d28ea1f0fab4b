package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// ReadRSS returns the resident set size of process pid (0: this process) in
// bytes, from /proc/<pid>/status. It fails where /proc is not available.
func ReadRSS(pid int) (int64, error) {
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(rest) // "12345 kB"
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: %s: %w", path, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("bench: no VmRSS in %s", path)
}

// RSSSampler samples a process's resident set size a few times a second
// and keeps the peak. Peak RSS over a run is what the run cost in memory:
// the kernel's VmHWM covers the process's whole life, load phase included.
type RSSSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	peak int64
}

// StartRSS starts sampling process pid (0: this process) every interval
// (100ms when zero). Where RSS cannot be read, the peak stays zero.
func StartRSS(pid int, interval time.Duration) *RSSSampler {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	s := &RSSSampler{stop: make(chan struct{})}
	sample := func() {
		if n, err := ReadRSS(pid); err == nil {
			s.mu.Lock()
			s.peak = max(s.peak, n)
			s.mu.Unlock()
		}
	}
	sample()
	s.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	})
	return s
}

// Stop ends sampling and returns the peak seen, in bytes.
func (s *RSSSampler) Stop() int64 {
	close(s.stop)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
