package config

import (
	"flag"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

// Feedback are the settings of SES feedback handling (mailproc/feedback).
type Feedback struct {
	BouncePauseHard        time.Duration
	BouncePauseSoft        time.Duration
	ComplaintsDisable      int
	DailyCapPerDestination int
}

func (f *Feedback) flags(fs *flag.FlagSet) {
	fs.DurationVar(&f.BouncePauseHard, "bounce-pause-hard", feedback.DefaultPauseHard, "a permanent SES bounce pauses forwarding to that destination for this long (its mail is dead-lettered destination_paused)")
	fs.DurationVar(&f.BouncePauseSoft, "bounce-pause-soft", feedback.DefaultPauseSoft, "a transient SES bounce pauses forwarding to that destination for this long")
	fs.IntVar(&f.ComplaintsDisable, "complaints-disable", feedback.DefaultComplaintsDisable, "complaints within 30 days that disable an alias (its mail dropped alias_disabled; negative: never)")
	fs.IntVar(&f.DailyCapPerDestination, "daily-cap-per-destination", 0, "most mails forwarded to one destination per UTC day; over it mail is dead-lettered daily_cap (0: no cap)")
}

func (f *Feedback) validate(bad func(flagName, format string, args ...any)) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"bounce-pause-hard", f.BouncePauseHard}, {"bounce-pause-soft", f.BouncePauseSoft}} {
		if d.v <= 0 {
			bad(d.name, "%s: must be positive", d.v)
		}
	}
	if f.ComplaintsDisable == 0 {
		bad("complaints-disable", "0: want a positive count, or negative to never disable")
	}
	if f.DailyCapPerDestination < 0 {
		bad("daily-cap-per-destination", "%d: want 0 (off) or a positive count", f.DailyCapPerDestination)
	}
}
