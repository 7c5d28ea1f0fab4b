package pebble

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	pdb "github.com/cockroachdb/pebble/v2"

	"github.com/strata-kv/strata/engine"
)

// Backup format
//
// After the engine.WriteBackupHeader line naming "pebble", the stream is a
// tar archive (archive/tar, PAX/USTAR) of a Pebble checkpoint: its
// directories and regular files under slash-separated relative names. The
// last entry is a regular file named endMarker whose content is
// "files=N bytes=M\n", the count and total size of the regular files before
// it; Restore requires it, which catches streams cut off between two
// entries (tar itself reads those as complete).
const endMarker = ".strata-backup-end"

// Backup implements engine.Backend. It takes a Pebble checkpoint (a
// consistent point-in-time copy: hard links to the immutable sstables plus
// copies of the MANIFEST and of the WAL up to the commit point) in a
// temporary directory beside the data directory, streams it to w as a tar
// archive and removes it. Commits made with NoSync before Backup is called
// are included. Writes go on while the archive streams; only the checkpoint
// itself holds the DB open against Close.
func (d *DB) Backup(w io.Writer) (err error) {
	tmp, err := os.MkdirTemp(filepath.Dir(d.dir), "."+filepath.Base(d.dir)+".backup-")
	if err != nil {
		return fmt.Errorf("pebble: backup: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("pebble: backup: remove checkpoint: %w", rerr)
		}
	}()
	// Checkpoint wants a directory that does not exist yet.
	ckpt := filepath.Join(tmp, "checkpoint")
	if err := d.checkpoint(ckpt); err != nil {
		return err
	}
	if err := engine.WriteBackupHeader(w, Name); err != nil {
		return fmt.Errorf("pebble: backup: %w", err)
	}
	if err := writeTar(w, ckpt); err != nil {
		return fmt.Errorf("pebble: backup: %w", err)
	}
	return nil
}

func (d *DB) checkpoint(dest string) error {
	db, err := d.acquire()
	if err != nil {
		return err
	}
	defer d.mu.RUnlock()
	// WithFlushedWAL syncs the WAL first so NoSync commits are included.
	if err := db.Checkpoint(dest, pdb.WithFlushedWAL()); err != nil {
		return fmt.Errorf("pebble: backup: checkpoint: %w", err)
	}
	return nil
}

// writeTar streams the tree under root to w as a tar archive ending with
// the end marker.
func writeTar(w io.Writer, root string) error {
	tw := tar.NewWriter(w)
	var files, size int64
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := de.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			return tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeDir,
				Name:     name + "/",
				Mode:     0o700,
				ModTime:  info.ModTime(),
			})
		case info.Mode().IsRegular():
			n, err := writeTarFile(tw, p, name, info)
			files++
			size += n
			return err
		default:
			return fmt.Errorf("checkpoint holds %s of unsupported type %v", name, info.Mode().Type())
		}
	})
	if err != nil {
		return err
	}
	marker := fmt.Sprintf("files=%d bytes=%d\n", files, size)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     endMarker,
		Mode:     0o600,
		Size:     int64(len(marker)),
	}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, marker); err != nil {
		return err
	}
	return tw.Close()
}

func writeTarFile(tw *tar.Writer, p, name string, info fs.FileInfo) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	// The checkpoint is private and its files no longer change (sstables are
	// immutable, the WAL and MANIFEST are copies), so the size is final.
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o600,
		Size:     info.Size(),
		ModTime:  info.ModTime(),
	}); err != nil {
		return 0, err
	}
	n, err := io.Copy(tw, f)
	if err == nil && n != info.Size() {
		err = fmt.Errorf("%s: copied %d of %d bytes", name, n, info.Size())
	}
	return n, err
}

// Restore recreates in dir, which must be empty or missing, the store a
// Backup wrote to r. Entries with absolute names, ".." elements or types
// other than directory and regular file are refused. Every file and
// directory is fsynced before Restore returns. On failure Restore removes
// what it wrote, leaving dir empty.
func Restore(dir string, r io.Reader) (err error) {
	if err := engine.ReadBackupHeader(r, Name); err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	if err := engine.PrepareRestoreDir(dir); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("pebble: restore: %w", err)
			if cerr := emptyDir(dir); cerr != nil {
				err = errors.Join(err, fmt.Errorf("pebble: restore: clean up: %w", cerr))
			}
		}
	}()
	dirs := map[string]struct{}{dir: {}}
	if err := untar(r, dir, dirs); err != nil {
		return err
	}
	for d := range dirs {
		if err := engine.SyncDir(d); err != nil {
			return err
		}
	}
	// PrepareRestoreDir may have created dir itself.
	return engine.SyncDir(filepath.Dir(dir))
}

// untar extracts the archive in r under dir, recording in dirs every
// directory whose entries changed.
func untar(r io.Reader, dir string, dirs map[string]struct{}) error {
	tr := tar.NewReader(r)
	var files, size int64
	var haveManifest bool
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return fmt.Errorf("archive ends without its end marker: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !filepath.IsLocal(filepath.FromSlash(name)) || strings.Contains(name, `\`) {
			return fmt.Errorf("archive entry %q: unsafe name", h.Name)
		}
		if name == endMarker {
			return checkEnd(tr, files, size, haveManifest)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			dirs[target] = struct{}{}
			dirs[filepath.Dir(target)] = struct{}{}
		case tar.TypeReg:
			parent := filepath.Dir(target)
			if err := os.MkdirAll(parent, 0o700); err != nil {
				return err
			}
			dirs[parent] = struct{}{}
			n, err := writeFile(target, tr)
			if err != nil {
				return fmt.Errorf("archive entry %q: %w", h.Name, err)
			}
			files++
			size += n
			if strings.HasPrefix(path.Base(name), "MANIFEST-") {
				haveManifest = true
			}
		default:
			return fmt.Errorf("archive entry %q: unsupported type %q", h.Name, h.Typeflag)
		}
	}
}

// checkEnd reads the end marker's content and checks it against what was
// extracted, then that the archive ends there.
func checkEnd(tr *tar.Reader, files, size int64, haveManifest bool) error {
	got, err := io.ReadAll(io.LimitReader(tr, 256))
	if err != nil {
		return fmt.Errorf("read archive: %w", err)
	}
	if want := fmt.Sprintf("files=%d bytes=%d\n", files, size); string(got) != want {
		return fmt.Errorf("end marker says %q, extracted %q",
			strings.TrimSpace(string(got)), strings.TrimSpace(want))
	}
	if !haveManifest {
		return errors.New("archive holds no MANIFEST")
	}
	if _, err := tr.Next(); err != io.EOF {
		if err == nil {
			err = errors.New("entries after the end marker")
		}
		return fmt.Errorf("read archive: %w", err)
	}
	return nil
}

// writeFile creates path (which must not exist) with the content of r and
// fsyncs it.
func writeFile(path string, r io.Reader) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// emptyDir removes everything inside dir.
func emptyDir(dir string) error {
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
