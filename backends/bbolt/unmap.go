package bbolt

import (
	"os"
	"time"
)

// unmapIfDue drops the data file's pages from the memory map when
// Options.UnmapInterval has passed since it last did. The caller holds
// writeMu (and mu read-locked): no write transaction runs, so bbolt cannot
// remap the file meanwhile, and reads go on (a read of a dropped page maps
// it again from the page cache).
func (d *DB) unmapIfDue() {
	if d.opts.UnmapInterval < 0 || d.opts.Mlock || time.Since(d.unmappedAt) < d.opts.UnmapInterval {
		return
	}
	d.unmappedAt = time.Now()
	fi, err := os.Stat(d.Path())
	if err != nil {
		return
	}
	unmapPages(d.cur.Info().Data, fi.Size())
}
