package incident

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxPhases and maxOffset bound what ParseFaults accepts: a scenario is a
// bounded replay, not a schedule.
const (
	maxPhases = 64
	maxOffset = 24 * time.Hour
)

// String renders p in the syntax ParseFaults reads, e.g.
// "s3:latency=30s@10s+30s" or "ses:500@1m0s+20s".
func (p Phase) String() string {
	kind := string(p.Kind)
	if p.Kind == KindLatency {
		kind += "=" + p.Latency.String()
	}
	return fmt.Sprintf("%s:%s@%s+%s", p.Target, kind, p.Start, p.Length)
}

// FormatFaults renders phases as ParseFaults reads them.
func FormatFaults(phases []Phase) string {
	s := make([]string, len(phases))
	for i, p := range phases {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// ParseFaults parses a comma-separated list of fault phases, each
//
//	target:kind@start+length
//
// with target s3 or ses, kind one of latency=DURATION, hang, reset, 500 or
// throttle, and start and length Go durations (start from the beginning of
// the load). Example: "s3:latency=30s@10s+30s,s3:hang@40s+20s,ses:500@70s+5s".
// An empty string is no faults.
func ParseFaults(spec string) ([]Phase, error) {
	var phases []Phase
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if len(phases) == maxPhases {
			return nil, fmt.Errorf("more than %d fault phases", maxPhases)
		}
		p, err := parsePhase(item)
		if err != nil {
			return nil, fmt.Errorf("fault %q: %w", item, err)
		}
		phases = append(phases, p)
	}
	return phases, nil
}

func parsePhase(s string) (Phase, error) {
	var p Phase
	target, rest, ok := strings.Cut(s, ":")
	if !ok {
		return p, errors.New("want target:kind@start+length")
	}
	switch Target(target) {
	case TargetS3, TargetSES:
		p.Target = Target(target)
	default:
		return p, fmt.Errorf("target %q: want s3 or ses", target)
	}
	kind, window, ok := strings.Cut(rest, "@")
	if !ok {
		return p, errors.New("missing @start+length")
	}
	kind, latency, hasLatency := strings.Cut(kind, "=")
	switch Kind(kind) {
	case KindLatency:
		if !hasLatency {
			return p, errors.New("latency needs a duration: latency=30s")
		}
		d, err := parseOffset(latency, true)
		if err != nil {
			return p, fmt.Errorf("latency: %w", err)
		}
		p.Latency = d
	case KindHang, KindReset, KindStatus500, KindThrottle:
		if hasLatency {
			return p, fmt.Errorf("kind %s takes no =value", kind)
		}
	default:
		return p, fmt.Errorf("kind %q: want latency=D, hang, reset, 500 or throttle", kind)
	}
	p.Kind = Kind(kind)
	start, length, ok := strings.Cut(window, "+")
	if !ok {
		return p, errors.New("window: want start+length")
	}
	var err error
	if p.Start, err = parseOffset(start, false); err != nil {
		return p, fmt.Errorf("start: %w", err)
	}
	if p.Length, err = parseOffset(length, true); err != nil {
		return p, fmt.Errorf("length: %w", err)
	}
	return p, nil
}

// parseOffset parses a duration in [0, maxOffset] (positive if nonzero).
func parseOffset(s string, nonzero bool) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 || d > maxOffset || (nonzero && d == 0) {
		return 0, fmt.Errorf("%s out of range", s)
	}
	return d, nil
}
