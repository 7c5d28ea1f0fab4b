package mvcc

// WatcherCounts returns the number of watchers on the store and, of those,
// the ones not caught up with its revision (etcd's
// etcd_debugging_mvcc_watcher_total and etcd_debugging_mvcc_slow_watcher_total).
func (s *Store) WatcherCounts() (total, slow int) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count, h.unsynced.size()
}
