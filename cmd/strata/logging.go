package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/strata-kv/strata/server"
)

// newLogger makes the member's logger from the --log-* flags: etcd's zap
// logger (server.NewLogger: JSON lines with etcd's keys level, ts, caller
// and msg, or console; to stderr, stdout, systemd/journal or files). out,
// if not nil, replaces the outputs (tests). The returned function flushes
// it and closes its files.
func newLogger(ls logSettings, out io.Writer) (*slog.Logger, func(), error) {
	if ls.logger != "" && ls.logger != "zap" {
		return nil, nil, fmt.Errorf("unknown logger option %q", ls.logger)
	}
	if out != nil {
		// The member logs from many goroutines: one write at a time.
		l, err := server.NewLoggerTo(ls.level, ls.format, &lockedWriter{w: out})
		return l, func() {}, err
	}
	newLog := server.NewLogger
	if ls.rotate {
		newLog = func(level string, outputs []string, format string) (*slog.Logger, func() error, error) {
			return server.NewRotatingLogger(level, outputs, format, ls.rotation)
		}
	}
	l, closeLog, err := newLog(ls.level, ls.outputs, ls.format)
	if err != nil {
		return nil, nil, err
	}
	return l, func() { closeLog() }, nil
}

// lockedWriter serializes the writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// logWarnings logs etcd's warnings about the configuration.
func logWarnings(l *slog.Logger, ws []warning) {
	for _, w := range ws {
		l.Log(context.Background(), w.level, w.msg, w.args...)
	}
}
