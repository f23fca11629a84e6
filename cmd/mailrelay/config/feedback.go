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
	// Refresh bounds how stale the feedback state a check reads may be.
	Refresh time.Duration
	// SESConfigurationSet is named on every send, with the alias tag.
	SESConfigurationSet string
}

func (f *Feedback) flags(fs *flag.FlagSet) {
	fs.DurationVar(&f.BouncePauseHard, "bounce-pause-hard", feedback.DefaultPauseHard, "a permanent SES bounce pauses forwarding to that destination for this long (its mail is dead-lettered destination_paused)")
	fs.DurationVar(&f.BouncePauseSoft, "bounce-pause-soft", feedback.DefaultPauseSoft, "a transient SES bounce pauses forwarding to that destination for this long")
	fs.IntVar(&f.ComplaintsDisable, "complaints-disable", feedback.DefaultComplaintsDisable, "complaints within 30 days that disable an alias (its mail dropped alias_disabled; negative: never)")
	fs.StringVar(&f.SESConfigurationSet, "ses-configuration-set", "", "SES configuration set named on every send, with the message tag alias: the alias, each character other than A-Z a-z 0-9 _ - replaced by _ (event publishing, reputation metrics; empty: none)")
	fs.DurationVar(&f.Refresh, "feedback-refresh", feedback.DefaultRefresh, "the per-mail checks read the feedback state from memory, reloaded every half of this: a pause, complaint, disable or daily count written by another replica takes effect here within it (and no check uses a copy older)")
	fs.IntVar(&f.DailyCapPerDestination, "daily-cap-per-destination", 0, "most mails forwarded to one destination per UTC day; over it mail is dead-lettered daily_cap (0: no cap)")
}

func (f *Feedback) validate(bad func(flagName, format string, args ...any)) {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"bounce-pause-hard", f.BouncePauseHard}, {"bounce-pause-soft", f.BouncePauseSoft}, {"feedback-refresh", f.Refresh}} {
		if d.v <= 0 {
			bad(d.name, "%s: must be positive", d.v)
		}
	}
	if f.ComplaintsDisable == 0 {
		bad("complaints-disable", "0: want a positive count, or negative to never disable")
	}
	if !validConfigurationSet(f.SESConfigurationSet) {
		bad("ses-configuration-set", "%q: want at most 64 of A-Z a-z 0-9 _ - (an SES configuration set name)", f.SESConfigurationSet)
	}
	if f.DailyCapPerDestination < 0 {
		bad("daily-cap-per-destination", "%d: want 0 (off) or a positive count", f.DailyCapPerDestination)
	}
}

// validConfigurationSet: "" or an SES configuration set name (letters,
// digits, '_' and '-', at most 64).
func validConfigurationSet(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
