package spool

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestLimitedLog checks that a repeated error is logged once per interval
// with the count of the repeats suppressed, per message, and that pebble's
// Errorf is limited per format (a full disk makes pebble log each retry).
func TestLimitedLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := newLimitedLog(log, 50*time.Millisecond)
	pl := pebbleLogger{log: log, errs: l}
	for i := range 1000 {
		l.Error("disk full", "i", i)
		l.Warn("other")
		pl.Errorf("background error: flush %d: %s", i, "no space left on device")
	}
	if got := strings.Count(buf.String(), "\n"); got != 3 {
		t.Fatalf("%d lines for 3 errors repeated 1000 times:\n%s", got, buf.String())
	}
	time.Sleep(60 * time.Millisecond)
	buf.Reset()
	l.Error("disk full")
	if !strings.Contains(buf.String(), fmt.Sprintf("suppressed=%d", 999)) {
		t.Fatalf("after the interval: %q, want the count of suppressed repeats", buf.String())
	}
}
