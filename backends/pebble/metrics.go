package pebble

import "github.com/strata-kv/strata/engine"

var _ engine.MetricsReporter = (*DB)(nil)

// Metrics reports pebble's compactions, flushes, compaction debt and block
// cache hits and misses (engine.MetricsReporter).
func (d *DB) Metrics() ([]engine.Metric, error) {
	db, err := d.acquire()
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	m := db.Metrics()
	return []engine.Metric{
		{Name: "compactions_total", Help: "Compactions pebble has run.", Counter: true, Value: float64(m.Compact.Count)},
		{Name: "flushes_total", Help: "Memtable flushes pebble has run.", Counter: true, Value: float64(m.Flush.Count)},
		{Name: "compaction_debt_bytes", Help: "Pebble's estimate of the bytes compactions still have to rewrite.", Value: float64(m.Compact.EstimatedDebt)},
		{Name: "block_cache_hits_total", Help: "Block cache hits.", Counter: true, Value: float64(m.BlockCache.Hits)},
		{Name: "block_cache_misses_total", Help: "Block cache misses.", Counter: true, Value: float64(m.BlockCache.Misses)},
		{Name: "block_cache_bytes", Help: "Bytes in the block cache.", Value: float64(m.BlockCache.Size)},
	}, nil
}
