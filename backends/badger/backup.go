package badger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/strata-kv/strata/engine"
)

// Backup format
//
// After the engine.WriteBackupHeader line naming "badger", the stream is a
// badger backup (bdg.DB.Backup's format: length-prefixed protobuf KVLists
// of the stored keys, their versions and values) cut into frames. Each
// frame is a little-endian uint32 payload length, a little-endian uint32
// CRC-32C of the payload, and the payload; a frame with length 0 (and CRC
// 0) ends the stream. Badger's own format has no checksum and no end, so
// the frames are what let Restore reject a corrupted or truncated stream.
const (
	frameHeaderLen = 8
	// frameSize is the payload size Backup cuts frames at.
	frameSize = 64 << 10
	// maxFrameSize is the largest payload Restore accepts.
	maxFrameSize = 1 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// restorePendingWrites is how many write batches Restore lets badger have
// in flight (bdg.DB.Load's maxPendingWrites).
const restorePendingWrites = 16

// Backup implements engine.Backend. It streams every engine key as of one
// read timestamp taken when it starts; commits go on meanwhile and are not
// included. Badger's DB.Backup reads key ranges in parallel goroutines each
// with its own read transaction, so their timestamps may differ while
// writes go on; Backup therefore uses a badger Stream with a single
// goroutine (bdg.Stream.NumGo = 1), whose one transaction gives one point in
// time. The stream holds deleted keys as tombstones, so they stay deleted
// after a restore. Closing the DB aborts a running Backup.
func (d *DB) Backup(w io.Writer) error {
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	if err := engine.WriteBackupHeader(w, Name); err != nil {
		return fmt.Errorf("badger: backup: %w", err)
	}
	fw := &frameWriter{w: w, buf: make([]byte, frameHeaderLen, frameHeaderLen+frameSize), d: d}
	st := db.NewStream()
	st.NumGo = 1
	st.Prefix = dataPrefix
	st.LogPrefix = "strata backup"
	if _, err := st.Backup(fw, 0); err != nil {
		if d.closeCtx.Err() != nil {
			return fmt.Errorf("badger: backup: %w", engine.ErrClosed)
		}
		return fmt.Errorf("badger: backup: %w", err)
	}
	if err := fw.close(); err != nil {
		return fmt.Errorf("badger: backup: %w", err)
	}
	return nil
}

// frameWriter cuts what is written to it into frames.
type frameWriter struct {
	w io.Writer
	// buf holds a frame header's room followed by the pending payload.
	buf []byte
	// d is checked for closing before each frame goes out.
	d *DB
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := frameHeaderLen + frameSize - len(f.buf)
		c := min(room, len(p))
		f.buf = append(f.buf, p[:c]...)
		p = p[c:]
		if len(f.buf) == frameHeaderLen+frameSize {
			if err := f.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush writes the pending payload as one frame.
func (f *frameWriter) flush() error {
	if err := f.d.closeCtx.Err(); err != nil {
		return engine.ErrClosed
	}
	payload := f.buf[frameHeaderLen:]
	if len(payload) == 0 {
		return nil
	}
	binary.LittleEndian.PutUint32(f.buf[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(f.buf[4:8], crc32.Checksum(payload, crcTable))
	if _, err := f.w.Write(f.buf); err != nil {
		return err
	}
	f.buf = f.buf[:frameHeaderLen]
	return nil
}

// close flushes the last frame and writes the end frame.
func (f *frameWriter) close() error {
	if err := f.flush(); err != nil {
		return err
	}
	_, err := f.w.Write(make([]byte, frameHeaderLen))
	return err
}

// frameReader reads the payloads of a framed stream. It returns io.EOF
// after the end frame and io.ErrUnexpectedEOF if the stream ends before it.
type frameReader struct {
	r       io.Reader
	hdr     [frameHeaderLen]byte
	payload []byte
	rest    []byte // unread part of payload
	ended   bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	for len(f.rest) == 0 {
		if f.ended {
			return 0, io.EOF
		}
		if err := f.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.rest)
	f.rest = f.rest[n:]
	return n, nil
}

// next reads the next frame.
func (f *frameReader) next() error {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("backup stream: %w", err)
	}
	n := binary.LittleEndian.Uint32(f.hdr[0:4])
	sum := binary.LittleEndian.Uint32(f.hdr[4:8])
	if n == 0 {
		if sum != 0 {
			return fmt.Errorf("backup stream: corrupt end frame")
		}
		f.ended = true
		return nil
	}
	if n > maxFrameSize {
		return fmt.Errorf("backup stream: frame of %d bytes", n)
	}
	if cap(f.payload) < int(n) {
		f.payload = make([]byte, n)
	}
	f.payload = f.payload[:n]
	if _, err := io.ReadFull(f.r, f.payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("backup stream: %w", err)
	}
	if crc32.Checksum(f.payload, crcTable) != sum {
		return fmt.Errorf("backup stream: checksum mismatch")
	}
	f.rest = f.payload
	return nil
}

// Restore recreates in dir, which must be missing or empty, the store a
// DB.Backup wrote to r. It loads the backup into a new store opened with
// the default Options, keeping the keys' badger versions, and closes it,
// which flushes and syncs everything. On failure it removes what it wrote
// to dir.
func Restore(dir string, r io.Reader) (err error) {
	if err := engine.ReadBackupHeader(r, Name); err != nil {
		return err
	}
	if err := engine.PrepareRestoreDir(dir); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if rerr := removeContents(dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("badger: restore: clean up: %w", rerr))
			}
		}
	}()
	d, err := Open(dir, nil)
	if err != nil {
		return fmt.Errorf("badger: restore: %w", err)
	}
	fr := &frameReader{r: r}
	// Load takes no context and expects no concurrent transactions: the
	// store is private to this function. It writes through badger's
	// memory-mapped files, so what it reads is charged to the space guard
	// first (see space.go).
	err = d.db.Load(&chargedReader{r: fr, take: func(n int64) error { return d.space.take(d.db, n) }}, restorePendingWrites)
	if err == nil && !fr.ended {
		err = fmt.Errorf("backup stream: %w", io.ErrUnexpectedEOF)
	}
	if err == nil {
		err = d.Sync()
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("badger: restore: %w", err)
	}
	return nil
}

// chargedReader passes on what it reads from r after charging take with
// twice its size (badger's write-ahead log entry for a small key-value,
// with its header, version and CRC, is up to about twice its encoding in
// the backup); it returns take's error instead.
type chargedReader struct {
	r    io.Reader
	take func(n int64) error
}

func (c *chargedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		if terr := c.take(2 * int64(n)); terr != nil {
			return 0, terr
		}
	}
	return n, err
}

// removeContents removes everything inside dir.
func removeContents(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
