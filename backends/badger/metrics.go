package badger

import "github.com/strata-kv/strata/engine"

var _ engine.MetricsReporter = (*DB)(nil)

// Metrics reports badger's LSM tables and block and index cache hits and
// misses (engine.MetricsReporter).
func (d *DB) Metrics() ([]engine.Metric, error) {
	db, err := d.acquire()
	if err != nil {
		return nil, err
	}
	defer d.mu.RUnlock()
	out := []engine.Metric{
		{Name: "lsm_tables", Help: "SSTables in badger's LSM tree.", Value: float64(len(db.Tables()))},
	}
	if m := db.BlockCacheMetrics(); m != nil {
		out = append(out,
			engine.Metric{Name: "block_cache_hits_total", Help: "Block cache hits.", Counter: true, Value: float64(m.Hits())},
			engine.Metric{Name: "block_cache_misses_total", Help: "Block cache misses.", Counter: true, Value: float64(m.Misses())})
	}
	if m := db.IndexCacheMetrics(); m != nil {
		out = append(out,
			engine.Metric{Name: "index_cache_hits_total", Help: "Index cache hits.", Counter: true, Value: float64(m.Hits())},
			engine.Metric{Name: "index_cache_misses_total", Help: "Index cache misses.", Counter: true, Value: float64(m.Misses())})
	}
	return out, nil
}
