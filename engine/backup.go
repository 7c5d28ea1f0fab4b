package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// backupMagic starts every backup stream, followed by the engine name and a
// newline. The engine's own format follows.
const backupMagic = "strata-backup/1 "

// WriteBackupHeader writes the header that tells Restore which engine wrote
// the stream that follows.
func WriteBackupHeader(w io.Writer, engineName string) error {
	_, err := io.WriteString(w, backupMagic+engineName+"\n")
	return err
}

// ReadBackupHeader consumes the header written by WriteBackupHeader and checks
// that it names engineName. It reads exactly the header's bytes from r.
func ReadBackupHeader(r io.Reader, engineName string) error {
	want := backupMagic + engineName + "\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: short header", ErrBackupMismatch)
		}
		return fmt.Errorf("engine: read backup header: %w", err)
	}
	if string(got) != want {
		return fmt.Errorf("%w: header %q, want %q", ErrBackupMismatch,
			strings.TrimRight(string(got), "\n"), strings.TrimRight(want, "\n"))
	}
	return nil
}

// PrepareRestoreDir makes sure dir exists and is empty, as Restore needs.
func PrepareRestoreDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("engine: restore: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("engine: restore: %w", err)
	}
	if len(ents) != 0 {
		return fmt.Errorf("%w: %s", ErrNotEmpty, dir)
	}
	return nil
}

// SyncDir fsyncs a directory so that file creations and renames in it are
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
