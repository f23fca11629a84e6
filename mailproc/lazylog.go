package mailproc

import (
	"context"
	"log/slog"
	"slices"
)

// lazyAttrs is a slog.Handler that keeps the attributes given to With
// instead of formatting them at once, and hands them to the handler below
// only for a record that is written. slog's own handlers format With's
// attributes eagerly, which pays when several lines share them (every mail
// logs "sent" and "finished" at Info); with Info off, a mail's attributes
// are needed only for its rare warning or error, and formatting them for
// every mail cost ~10 us of CPU per mail (two With calls).
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (l lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	if len(l.attrs) == 0 {
		return l.h.Handle(ctx, r)
	}
	return l.h.WithAttrs(l.attrs).Handle(ctx, r)
}

func (l lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	return lazyAttrs{h: l.h, attrs: append(slices.Clip(l.attrs), attrs...)}
}

func (l lazyAttrs) WithGroup(name string) slog.Handler {
	if len(l.attrs) == 0 {
		return lazyAttrs{h: l.h.WithGroup(name)}
	}
	return lazyAttrs{h: l.h.WithAttrs(l.attrs).WithGroup(name)}
}

// mailLogger returns the logger for one mail's lines: log itself when it
// discards everything, a lazyAttrs-backed one when Info is off (only
// warnings and errors are written), else log (its attributes formatted
// once, for the lines every mail writes).
func mailLogger(log *slog.Logger) *slog.Logger {
	ctx := context.Background()
	switch {
	case !log.Enabled(ctx, slog.LevelError), log.Enabled(ctx, slog.LevelInfo):
		return log
	default:
		return slog.New(lazyAttrs{h: log.Handler()})
	}
}
