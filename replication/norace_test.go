//go:build !race

package replication

// raceEnabled is set under the race detector (see the member address
// tests: hashicorp/raft v1.8.0 races on a peer's address, #681).
const raceEnabled = false
