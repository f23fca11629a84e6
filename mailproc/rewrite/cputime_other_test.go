//go:build !unix

package rewrite

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
