//go:build race

package incident

// raceEnabled: the race detector slows everything about tenfold, and the
// replay runs the sender, the relay and the stand-ins on the same CPUs.
const raceEnabled = true
