//go:build !unix

// cpu_other.go: platforms without getrusage(2) report no CPU time.
package benchcmd

import "time"

// processCPU reports that the platform gives no CPU time.
func processCPU() (time.Duration, bool) { return 0, false }
