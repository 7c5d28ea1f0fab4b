//go:build race

package robustness

// raceBuild is true when this test binary runs under the race detector;
// the members are then built with -race too.
const raceBuild = true
