package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"

	"github.com/strata-kv/strata/server"
)

// walFsyncFaultEnv turns on fault injection, for tests only (the
// process-level robustness suite): while the file the variable names
// exists, every fsync that makes the raft log's appended entries or its
// term and vote durable fails with EIO, as a failing disk's would. The
// member then exits without acknowledging, as etcd exits when it cannot
// save its WAL (see server.Config.WALSyncFault).
const walFsyncFaultEnv = "STRATA_FAULT_INJECT_WAL_FSYNC"

// injectFaults sets the fault injection the environment asks for.
func injectFaults(cfg *server.Config, getenv func(string) string, logger *slog.Logger) {
	path := getenv(walFsyncFaultEnv)
	if path == "" {
		return
	}
	logger.Warn("fault injection: the raft log's fsyncs fail while the trigger file exists", "env", walFsyncFaultEnv, "trigger", path)
	cfg.WALSyncFault = func() error {
		_, err := os.Stat(path)
		switch {
		case err == nil:
			return fmt.Errorf("%s: %s exists: %w", walFsyncFaultEnv, path, syscall.EIO)
		case errors.Is(err, fs.ErrNotExist):
			return nil
		default:
			return fmt.Errorf("%s: %w", walFsyncFaultEnv, err)
		}
	}
}
