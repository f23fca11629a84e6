package spool

import (
	"context"
	"fmt"
	"log/slog"
)

// pebbleLogger routes pebble's own logging into slog: informational
// messages at debug level, errors at error level.
type pebbleLogger struct {
	log *slog.Logger
}

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

// Fatalf is called by pebble for unrecoverable conditions (such as data
// corruption) after which it must not continue; like pebble's default
// logger it does not return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("fatal: " + msg)
	panic("pebble: " + msg)
}
