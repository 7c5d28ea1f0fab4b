package server

import "time"

// SetRevisionCompactInterval makes c's revision auto-compaction run every
// d, for tests.
func SetRevisionCompactInterval(c *Config, d time.Duration) {
	c.revisionCompactInterval = d
}
