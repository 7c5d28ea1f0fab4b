package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// Log levels above slog's error: etcd's panic and fatal levels log only
// what is logged at them, which Strata's server never does.
const (
	levelPanic = slog.LevelError + 4
	levelFatal = slog.LevelError + 8
)

// newLogger makes the member's logger from the --log-* flags: JSON lines
// with etcd's keys (level, ts, msg) for --log-format=json, slog's text
// for console; to stderr (--log-outputs=default or stderr), stdout, or
// appended to files. The returned function closes the files.
func newLogger(ls logSettings, out io.Writer) (*slog.Logger, func(), error) {
	if ls.logger != "" && ls.logger != "zap" {
		return nil, nil, fmt.Errorf("unknown logger option %q", ls.logger)
	}
	var level slog.Level
	switch strings.ToLower(ls.level) {
	case "", "info":
		level = slog.LevelInfo
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error", "dpanic":
		level = slog.LevelError
	case "panic":
		level = levelPanic
	case "fatal":
		level = levelFatal
	default:
		return nil, nil, fmt.Errorf("--log-level: unrecognized level: %q", ls.level)
	}
	var (
		ws    []io.Writer
		files []*os.File
	)
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	outputs := ls.outputs
	if len(outputs) == 0 {
		outputs = []string{"default"}
	}
	for _, o := range outputs {
		switch o {
		case "default", "stderr":
			ws = append(ws, os.Stderr)
		case "stdout":
			ws = append(ws, os.Stdout)
		case "systemd/journal":
			closeAll()
			return nil, nil, errors.New("--log-outputs=systemd/journal is not supported: log to stderr, which journald captures")
		default:
			f, err := os.OpenFile(o, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("--log-outputs: %w", err)
			}
			files = append(files, f)
			ws = append(ws, f)
		}
	}
	if out != nil {
		ws = []io.Writer{out}
	}
	w := ws[0]
	if len(ws) > 1 {
		w = io.MultiWriter(ws...)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch ls.format {
	case "", "json":
		opts.ReplaceAttr = etcdKeys
		h = slog.NewJSONHandler(w, opts)
	case "console":
		h = slog.NewTextHandler(w, opts)
	default:
		closeAll()
		return nil, nil, fmt.Errorf("unsupported log format: %s", ls.format)
	}
	return slog.New(h), closeAll, nil
}

// etcdKeys gives slog's JSON lines etcd's (zap's) keys and values: "level"
// in lower case, "ts" in UTC with microseconds, "msg".
func etcdKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String("ts", a.Value.Time().UTC().Format("2006-01-02T15:04:05.000000Z07:00"))
	case slog.LevelKey:
		l, _ := a.Value.Any().(slog.Level)
		switch {
		case l >= levelFatal:
			return slog.String("level", "fatal")
		case l >= levelPanic:
			return slog.String("level", "panic")
		}
		return slog.String("level", strings.ToLower(l.String()))
	}
	return a
}

// logWarnings logs etcd's warnings about the configuration.
func logWarnings(l *slog.Logger, ws []warning) {
	for _, w := range ws {
		l.Log(context.Background(), w.level, w.msg, w.args...)
	}
}
