package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"
)

// Logging.
//
// Strata's packages log through log/slog (the standard library's
// structured logger), so that a library user brings any handler. The
// server's own logger, built from LogLevel, LogOutputs and LogFormat when
// Config.Logger is not given, is a zap logger behind a slog handler
// (zapslog), configured as etcd's: the same encoder (keys level, ts,
// caller, msg; etcd's timestamp format; lower-case levels), the same
// sampling, the same outputs. Lines therefore read and parse as etcd's,
// and the keys given at the call sites are etcd's field names
// (local-member-id, data-dir, ...).

// Log outputs (etcd's --log-outputs values).
const (
	LogOutputDefault = "default" // stderr, as etcd
	LogOutputStderr  = "stderr"
	LogOutputStdout  = "stdout"
	LogOutputJournal = "systemd/journal"
)

// Log formats (etcd's --log-format).
const (
	LogFormatJSON    = "json"
	LogFormatConsole = "console"
)

// logConfig checks etcd's rules for --log-level, --log-outputs and
// --log-format, and returns the zap level and the output paths.
func logConfig(level string, outputs []string, format string) (zapcore.Level, []string, bool, error) {
	var lvl zapcore.Level
	if err := lvl.Set(level); err != nil {
		return 0, nil, false, fmt.Errorf("server: --log-level: %w", err)
	}
	if _, err := logutil.ConvertToZapFormat(format); err != nil {
		return 0, nil, false, fmt.Errorf("server: --log-format: %w", err)
	}
	if len(outputs) == 0 {
		outputs = []string{LogOutputDefault}
	}
	if len(outputs) > 1 && slices.Contains(outputs, LogOutputDefault) {
		return 0, nil, false, fmt.Errorf("server: multi logoutput for %q is not supported yet", LogOutputDefault)
	}
	journal := slices.Contains(outputs, LogOutputJournal)
	if journal && len(outputs) > 1 {
		return 0, nil, false, fmt.Errorf("server: running with systemd/journal but other '--log-outputs' values (%q) are configured with 'default'; override 'default' value with something else", outputs)
	}
	var paths []string
	for _, o := range outputs {
		switch o {
		case LogOutputDefault, LogOutputStderr:
			paths = append(paths, "stderr")
		case LogOutputStdout:
			paths = append(paths, "stdout")
		case LogOutputJournal:
		default:
			if o == "" {
				return 0, nil, false, errors.New("server: --log-outputs: empty output")
			}
			paths = append(paths, o)
		}
	}
	slices.Sort(paths)
	return lvl, slices.Compact(paths), journal, nil
}

// NewLogger builds the logger etcd builds from --log-level, --log-outputs
// and --log-format (see Config's fields of those names), as a slog.Logger
// writing through zap. Close flushes it and releases its files (never
// stdout or stderr).
func NewLogger(level string, outputs []string, format string) (_ *slog.Logger, closeFn func() error, err error) {
	return newLogger(level, outputs, format, "", nil)
}

// DefaultLogRotationConfig is etcd's --log-rotation-config-json.
const DefaultLogRotationConfig = `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`

// NewRotatingLogger is NewLogger with etcd's log rotation
// (--enable-log-rotation): the one file of outputs is rotated as
// rotationJSON (--log-rotation-config-json, lumberjack's settings:
// maxsize in MB, maxage in days, maxbackups, localtime, compress) says.
// As etcd's, it uses lumberjack, whose file, once rotated, keeps one
// goroutine that Close does not end (one per logger, for the process's
// life).
func NewRotatingLogger(level string, outputs []string, format, rotationJSON string) (_ *slog.Logger, closeFn func() error, err error) {
	if rotationJSON == "" {
		rotationJSON = DefaultLogRotationConfig
	}
	return newLogger(level, outputs, format, rotationJSON, nil)
}

// ErrLogRotationInvalidLogOutput is etcd's error for log rotation without
// exactly one file among the log outputs.
var ErrLogRotationInvalidLogOutput = errors.New("--log-outputs requires a single file path when --log-rotate-config-json is defined")

// rotatingFile parses etcd's log rotation settings for the one file of
// paths and returns it with the other paths.
func rotatingFile(paths []string, rotationJSON string) (*lumberjack.Logger, []string, error) {
	var file string
	var rest []string
	for _, p := range paths {
		if p == "stderr" || p == "stdout" {
			rest = append(rest, p)
			continue
		}
		if file != "" {
			return nil, nil, ErrLogRotationInvalidLogOutput
		}
		file = p
	}
	if file == "" {
		return nil, nil, ErrLogRotationInvalidLogOutput
	}
	lj := &lumberjack.Logger{}
	if err := json.Unmarshal([]byte(rotationJSON), lj); err != nil {
		var syntaxErr *json.SyntaxError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntaxErr):
			return nil, nil, fmt.Errorf("improperly formatted log rotation config: %w", err)
		case errors.As(err, &typeErr):
			return nil, nil, fmt.Errorf("invalid log rotation config: %w", err)
		default:
			return nil, nil, fmt.Errorf("fail to unmarshal log rotation config: %w", err)
		}
	}
	lj.Filename = file
	return lj, rest, nil
}

// NewLoggerTo is NewLogger writing to w instead of --log-outputs.
func NewLoggerTo(level, format string, w io.Writer) (*slog.Logger, error) {
	l, _, err := newLogger(level, nil, format, "", w)
	return l, err
}

func newLogger(level string, outputs []string, format, rotationJSON string, w io.Writer) (_ *slog.Logger, closeFn func() error, err error) {
	if level == "" {
		level = logutil.DefaultLogLevel
	}
	if format == "" {
		format = logutil.DefaultLogFormat
	}
	lvl, paths, journal, err := logConfig(level, outputs, format)
	if err != nil {
		return nil, nil, invalid(err)
	}
	var rotated *lumberjack.Logger
	if rotationJSON != "" && w == nil {
		if rotated, paths, err = rotatingFile(paths, rotationJSON); err != nil {
			return nil, nil, invalid(err)
		}
	}
	encCfg := logutil.DefaultZapLoggerConfig.EncoderConfig
	var enc zapcore.Encoder
	if format == LogFormatConsole {
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	var sink zapcore.WriteSyncer
	closeSink := func() {}
	switch {
	case w != nil:
		sink = zapcore.AddSync(w)
	case journal:
		// etcd's journald writer, falling back to stderr.
		jw, err := logutil.NewJournalWriter(os.Stderr) //nolint:staticcheck // the writer etcd itself uses
		if err != nil {
			return nil, nil, fmt.Errorf("server: can't find journal (%w)", err)
		}
		sink = zapcore.AddSync(jw)
	default:
		if sink, closeSink, err = zap.Open(paths...); err != nil {
			return nil, nil, fmt.Errorf("server: --log-outputs: %w", err)
		}
		if rotated != nil {
			// lumberjack writes, and rotates, under its own lock; its
			// file needs no Sync (etcd's rotation sink has none).
			sink = zapcore.NewMultiWriteSyncer(sink, zapcore.AddSync(rotated))
			closeOthers := closeSink
			closeSink = func() { closeOthers(); rotated.Close() }
		}
	}
	core := zapcore.NewCore(enc, sink, zap.NewAtomicLevelAt(lvl))
	s := logutil.DefaultZapLoggerConfig.Sampling
	core = zapcore.NewSamplerWithOptions(core, sampleTick, s.Initial, s.Thereafter)
	h := zapslog.NewHandler(core, zapslog.WithCaller(true))
	return slog.New(h), func() error {
		err := sink.Sync()
		closeSink()
		// fsync of a terminal or a pipe (stderr) fails harmlessly.
		if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTTY) {
			return err
		}
		return nil
	}, nil
}

// sampleTick is zap's sampling period (zap.Config's).
const sampleTick = time.Second
