package mailproc

import (
	"bytes"
	"log/slog"
	"regexp"
	"testing"
)

// TestMailLoggerWritesWhatWithWould: the lazy attributes come out exactly
// as slog's own With writes them, in order, with groups, at every level
// that is written, and nothing is written below the level.
func TestMailLoggerWritesWhatWithWould(t *testing.T) {
	timeRE := regexp.MustCompile(`time=\S+ `)
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		var want, got bytes.Buffer
		opts := &slog.HandlerOptions{Level: level}
		direct := slog.New(slog.NewTextHandler(&want, opts))
		lazy := mailLogger(slog.New(slog.NewTextHandler(&got, opts)))
		for _, l := range []*slog.Logger{direct, lazy} {
			m := l.With("sns_message_id", "id-1", "attempt", 2)
			m.Info("sent", "ses_message_id", "x")
			m = m.With("ses_message_id", "ses-9")
			m.Warn("dead-lettered", "reason", "r")
			m.WithGroup("g").With("k", "v").Error("spool retry failed", "err", "boom")
			l.Error("spool next failed", "err", "e")
		}
		w, g := timeRE.ReplaceAllString(want.String(), ""), timeRE.ReplaceAllString(got.String(), "")
		if w != g {
			t.Errorf("level %v:\nwith slog's With:\n%s\nwith mailLogger:\n%s", level, w, g)
		}
		if level >= slog.LevelWarn && bytes.Contains(got.Bytes(), []byte("msg=sent")) {
			t.Errorf("level %v: an Info line was written", level)
		}
	}
	if _, lazy := mailLogger(slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))).Handler().(lazyAttrs); !lazy {
		t.Error("a Warn logger does not defer its attributes")
	}
	if _, lazy := mailLogger(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))).Handler().(lazyAttrs); lazy {
		t.Error("an Info logger defers its attributes (formatted once, they serve every line)")
	}
}
