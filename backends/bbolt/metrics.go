package bbolt

import "github.com/strata-kv/strata/engine"

var _ engine.MetricsReporter = (*DB)(nil)

// Metrics reports bbolt's freelist, read transactions and page writes
// (engine.MetricsReporter).
func (d *DB) Metrics() ([]engine.Metric, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return nil, engine.ErrClosed
	}
	st := d.cur.Stats()
	return []engine.Metric{
		{Name: "freelist_free_pages", Help: "Free pages on bbolt's freelist.", Value: float64(st.FreePageN)},
		{Name: "freelist_pending_pages", Help: "Pages freed by transactions still read.", Value: float64(st.PendingPageN)},
		{Name: "read_transactions_total", Help: "Read transactions bbolt has started.", Counter: true, Value: float64(st.TxN)},
		{Name: "open_read_transactions", Help: "Read transactions open now.", Value: float64(st.OpenTxN)},
		{Name: "page_writes_total", Help: "Pages bbolt has written.", Counter: true, Value: float64(st.TxStats.GetWrite())},
		{Name: "page_splits_total", Help: "Node splits in bbolt's B+tree.", Counter: true, Value: float64(st.TxStats.GetSplit())},
	}, nil
}
