//go:build race

package badger_test

// raceEnabled shortens tests that the race detector slows down.
const raceEnabled = true
