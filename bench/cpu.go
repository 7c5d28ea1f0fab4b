package bench

import (
	"fmt"
	"os"
	"time"

	"github.com/prometheus/procfs"
)

// ReadCPU returns the CPU time (user and system) process pid (0: this
// process) has used so far, from /proc/<pid>/stat. It fails where /proc is
// not available. The difference of two readings around a benchmark run is
// what the run cost the process in CPU.
func ReadCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		pid = os.Getpid()
	}
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of %d: %w", pid, err)
	}
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of %d: %w", pid, err)
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), nil
}
