//go:build !unix

package mailproc

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
