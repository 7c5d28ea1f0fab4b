package server

import "time"

// SetRevisionCompactInterval sets how often the revision auto-compaction
// runs, for tests; the returned function restores it.
func SetRevisionCompactInterval(d time.Duration) func() {
	old := revisionCompactInterval
	revisionCompactInterval = d
	return func() { revisionCompactInterval = old }
}
