package config

import (
	"flag"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/pace"
)

// Pace are the settings of the sending pace (mailproc/pace).
type Pace struct {
	Enabled      bool          // pace sends to the SES quota
	MaxSendRate  float64       // ceiling on the account's MaxSendRate (0: none)
	QuotaRefresh time.Duration // how often the quota is asked
	NearDailyCap float64       // fraction of Max24HourSend from which sends wait
}

func (p *Pace) flags(fs *flag.FlagSet) {
	fs.BoolVar(&p.Enabled, "ses-pace", true, "send no faster than the SES account's MaxSendRate (asked from SES), shared among replicas, slowing down on Throttling")
	fs.Float64Var(&p.MaxSendRate, "ses-max-send-rate", 0, "ceiling on the SES sending rate in recipients per second for the whole account (0: the quota SES reports)")
	fs.DurationVar(&p.QuotaRefresh, "ses-quota-refresh", pace.DefaultRefresh, "how often the SES sending quota is asked again")
	fs.Float64Var(&p.NearDailyCap, "ses-near-daily-quota", pace.DefaultNearCap, "fraction of the SES 24-hour quota from which new sends wait")
}

func (p *Pace) validate(bad func(flagName, format string, args ...any)) {
	if p.MaxSendRate < 0 {
		bad("ses-max-send-rate", "%g: must not be negative", p.MaxSendRate)
	}
	if p.QuotaRefresh < 10*time.Second {
		bad("ses-quota-refresh", "%s: want at least 10s", p.QuotaRefresh)
	}
	if p.NearDailyCap <= 0 || p.NearDailyCap > 1 {
		bad("ses-near-daily-quota", "%g: want a fraction in (0, 1]", p.NearDailyCap)
	}
}
