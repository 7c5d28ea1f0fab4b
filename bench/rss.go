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
	m, err := ReadMem(pid)
	return m.RSS, err
}

// Mem is a process's resident memory, in bytes.
type Mem struct {
	// RSS is all of it (VmRSS); Anon its anonymous part (RssAnon): the
	// heap, stacks and other private memory, without the pages of files
	// mapped (the executable's own, a memory-mapped database's), which
	// the page cache shares.
	RSS, Anon int64
}

// ReadMem returns the resident memory of process pid (0: this process),
// from /proc/<pid>/status. It fails where /proc is not available; Anon is
// zero where the kernel does not tell it.
func ReadMem(pid int) (Mem, error) {
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Mem{}, err
	}
	var m Mem
	found := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		var dst *int64
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if ok {
			dst, found = &m.RSS, true
		} else if rest, ok = bytes.CutPrefix(line, []byte("RssAnon:")); ok {
			dst = &m.Anon
		} else {
			continue
		}
		f := bytes.Fields(rest) // "12345 kB"
		if len(f) == 0 {
			return Mem{}, fmt.Errorf("bench: %s: %q", path, line)
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return Mem{}, fmt.Errorf("bench: %s: %w", path, err)
		}
		*dst = kb * 1024
	}
	if !found {
		return Mem{}, fmt.Errorf("bench: no VmRSS in %s", path)
	}
	return m, nil
}

// RSSSampler samples a process's resident set size a few times a second
// and keeps the peak. Peak RSS over a run is what the run cost in memory:
// the kernel's VmHWM covers the process's whole life, load phase included.
type RSSSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	peak Mem // each field's own peak
}

// StartRSS starts sampling process pid (0: this process) every interval
// (100ms when zero). Where RSS cannot be read, the peak stays zero.
func StartRSS(pid int, interval time.Duration) *RSSSampler {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	s := &RSSSampler{stop: make(chan struct{})}
	sample := func() {
		if m, err := ReadMem(pid); err == nil {
			s.mu.Lock()
			s.peak = Mem{RSS: max(s.peak.RSS, m.RSS), Anon: max(s.peak.Anon, m.Anon)}
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

// Stop ends sampling and returns the peaks seen, in bytes: of the
// resident set size and, apart, of its anonymous part.
func (s *RSSSampler) Stop() Mem {
	close(s.stop)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
