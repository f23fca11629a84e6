package spool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// logEvery is the least interval between two logs of one repeated error.
const logEvery = 10 * time.Second

// pebbleLogger routes pebble's own logging into slog: informational
// messages at debug level, errors at error level, rate-limited (a full disk
// makes pebble retry failing flushes and log each failure).
type pebbleLogger struct {
	log   *slog.Logger
	errs  *limitedLog
	fatal func(error)
}

func newPebbleLogger(log *slog.Logger, fatal func(error)) pebbleLogger {
	return pebbleLogger{log: log, errs: newLimitedLog(log, logEvery), fatal: fatal}
}

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	// Limited by format: the same failure differs in file numbers.
	l.errs.at(slog.LevelError, format, fmt.Sprintf(format, args...), nil)
}

// Fatalf is called by pebble for conditions after which it must not
// continue: corruption, and any error committing a batch (a failed WAL
// write or sync) or writing the MANIFEST. Like pebble's default logger it
// does not return: it puts the spool in the fail-closed state, then panics
// with a fatalPanic, which Spool.commit recovers (a commit that fails this
// way leaves pebble's commit pipeline usable, but its WAL writer keeps the
// error: no later commit may be attempted, and none is).
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("fatal: " + msg)
	if l.fatal != nil {
		l.fatal(errors.New("pebble: " + msg))
	}
	panic(fatalPanic{msg: "pebble: " + msg})
}

// limitedLog logs an error the first time its key is seen, then at most
// once per interval, with the number of repeats suppressed in between: a
// failure that repeats (a full disk) is reported without a log storm.
type limitedLog struct {
	log   *slog.Logger
	every time.Duration

	mu   sync.Mutex
	seen map[string]*limitedState
}

type limitedState struct {
	last       time.Time
	suppressed int
}

// maxLimitedKeys bounds the memory of limitedLog: keys are messages or
// format strings, a small fixed set in practice.
const maxLimitedKeys = 256

func newLimitedLog(log *slog.Logger, every time.Duration) *limitedLog {
	return &limitedLog{log: log, every: every, seen: map[string]*limitedState{}}
}

// allow reports whether an event of key may be logged now, and how many of
// its events were suppressed since the last one logged.
func (l *limitedLog) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	st := l.seen[key]
	if st == nil {
		if len(l.seen) >= maxLimitedKeys {
			clear(l.seen)
		}
		l.seen[key] = &limitedState{last: now}
		return true, 0
	}
	if now.Sub(st.last) < l.every {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}

// Error logs msg at error level unless it was logged less than every ago.
func (l *limitedLog) Error(msg string, args ...any) { l.at(slog.LevelError, msg, msg, args) }

// Warn is Error at warning level.
func (l *limitedLog) Warn(msg string, args ...any) { l.at(slog.LevelWarn, msg, msg, args) }

func (l *limitedLog) at(level slog.Level, key, msg string, args []any) {
	ok, n := l.allow(key)
	if !ok {
		return
	}
	if n > 0 {
		args = append(args, "suppressed", n, "suppressed_for", l.every.String())
	}
	l.log.Log(context.Background(), level, msg, args...)
}
