package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// The meta file holds the logical first index: entries below it are deleted
// even if the segment that holds them still exists. It is replaced
// atomically (write meta.tmp, fsync, rename, fsync the directory).
//
//	0  magic      "STRATAMT"
//	8  version    uint32 LE (1)
//	12 reserved   uint32
//	16 firstIndex uint64 LE
//	24 reserved   uint32
//	28 crc        uint32 LE, CRC32-C of bytes 0..27
const (
	metaName    = "meta"
	metaTmpName = "meta.tmp"
	metaSize    = 32
	metaVersion = 1
)

var metaMagic = []byte("STRATAMT")

func encodeMeta(first uint64) []byte {
	b := make([]byte, 0, metaSize)
	b = append(b, metaMagic...)
	b = binary.LittleEndian.AppendUint32(b, metaVersion)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, first)
	b = binary.LittleEndian.AppendUint32(b, 0)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// readMeta returns the logical first index recorded in dir, 0 if there is
// no meta file.
func readMeta(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wal: read meta: %w", err)
	}
	if len(b) != metaSize || !bytes.Equal(b[:8], metaMagic) ||
		crc32.Checksum(b[:28], castagnoli) != binary.LittleEndian.Uint32(b[28:]) {
		return 0, fmt.Errorf("%w: meta file is damaged", ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != metaVersion {
		return 0, fmt.Errorf("%w: unsupported meta version %d", ErrCorrupt, v)
	}
	return binary.LittleEndian.Uint64(b[16:]), nil
}

// writeMeta durably replaces the meta file. If it fails after the rename
// (renamed is true) the file on disk may hold either value.
func writeMeta(dir string, first uint64) (renamed bool, err error) {
	tmp := filepath.Join(dir, metaTmpName)
	if err := writeFileSync(tmp, encodeMeta(first)); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("wal: write meta: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, metaName)); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("wal: write meta: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return true, fmt.Errorf("wal: write meta: %w", err)
	}
	return true, nil
}

// writeFileSync creates or truncates path, writes b and fsyncs it.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = fdatasync(f)
	}
	return errors.Join(err, f.Close())
}

// syncDir fsyncs a directory, making creations, renames and removals of its
// entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
