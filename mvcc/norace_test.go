//go:build !race

package mvcc

// raceEnabled scales randomized tests down under the race detector.
const raceEnabled = false
