package mailproc

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGiveWay(t *testing.T) {
	var spin atomic.Bool
	var wg sync.WaitGroup
	defer func() { spin.Store(false); wg.Wait() }()
	tests := []struct {
		name   string
		active func() int64
		short  bool // keep the CPUs busy
		waits  bool
	}{
		{"no intake", nil, true, false},
		{"intake idle", func() int64 { return 0 }, true, false},
		{"intake busy, CPUs short", func() int64 { return 1 }, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.short && !spin.Load() {
				spin.Store(true)
				for range 4 * runtime.GOMAXPROCS(0) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for spin.Load() {
						}
					}()
				}
			}
			p := &Pool{cfg: Config{IntakeActive: tc.active}}
			single := false
			for range 20 { // the runtime's count is approximate: a few tries
				if single = p.giveWay(); single {
					if p.lane.TryLock() {
						t.Fatal("giveWay answered true without holding the lane")
					}
					p.lane.Unlock()
					break
				}
			}
			if single != tc.waits {
				t.Fatalf("gave way: %v, want %v", single, tc.waits)
			}
		})
	}
}
