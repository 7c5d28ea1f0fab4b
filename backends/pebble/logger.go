package pebble

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	pdb "github.com/cockroachdb/pebble/v2"
)

// slogLogger adapts a *slog.Logger (or nothing) to Pebble's Logger
// interface.
type slogLogger struct {
	// l receives the lines; nil discards them.
	l *slog.Logger
	// info is the level Infof logs at: Info for Pebble's own messages, Debug
	// for its event listener, which reports every flush and compaction.
	info slog.Level
}

var _ pdb.Logger = slogLogger{}

// newLogger returns a Pebble logger writing to l; a nil l discards
// everything but Fatalf's panic. events selects Debug for Infof lines.
func newLogger(l *slog.Logger, events bool) slogLogger {
	lvl := slog.LevelInfo
	if events {
		lvl = slog.LevelDebug
	}
	return slogLogger{l: l, info: lvl}
}

func (s slogLogger) log(level slog.Level, format string, args ...any) {
	if s.l == nil || !s.l.Enabled(context.Background(), level) {
		return
	}
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	s.l.Log(context.Background(), level, msg, slog.String("engine", "pebble"))
}

// Infof implements pdb.Logger.
func (s slogLogger) Infof(format string, args ...any) { s.log(s.info, format, args...) }

// Errorf implements pdb.Logger.
func (s slogLogger) Errorf(format string, args ...any) { s.log(slog.LevelError, format, args...) }

// Fatalf implements pdb.Logger. Pebble calls it on unrecoverable states
// (a failed WAL write, detected corruption) and does not expect it to
// return; Pebble's default logger exits the process. Library code should not
// exit, so this logs at Error and panics, even when logs are discarded.
func (s slogLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.log(slog.LevelError, "fatal: %s", msg)
	panic("pebble: fatal: " + msg)
}
