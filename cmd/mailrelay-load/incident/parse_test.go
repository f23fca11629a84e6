package incident

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

var parseTests = []struct {
	spec string
	want []Phase // nil with err
	err  string
}{
	{"", nil, ""},
	{" , ", nil, ""},
	{"s3:hang@10s+30s", []Phase{{Target: TargetS3, Kind: KindHang, Start: 10 * time.Second, Length: 30 * time.Second}}, ""},
	{"s3:latency=30s@0s+1m", []Phase{{Target: TargetS3, Kind: KindLatency, Latency: 30 * time.Second, Length: time.Minute}}, ""},
	{"s3:hang@10s+30s, ses:500@60s+20s", []Phase{
		{Target: TargetS3, Kind: KindHang, Start: 10 * time.Second, Length: 30 * time.Second},
		{Target: TargetSES, Kind: KindStatus500, Start: time.Minute, Length: 20 * time.Second},
	}, ""},
	{"ses:throttle@500ms+1s,s3:reset@1s+1s", []Phase{
		{Target: TargetSES, Kind: KindThrottle, Start: 500 * time.Millisecond, Length: time.Second},
		{Target: TargetS3, Kind: KindReset, Start: time.Second, Length: time.Second},
	}, ""},
	{"sqs:hang@1s+1s", nil, "target"},
	{"s3hang@1s+1s", nil, "target:kind"},
	{"s3:melt@1s+1s", nil, "kind"},
	{"s3:latency@1s+1s", nil, "latency needs"},
	{"s3:latency=0s@1s+1s", nil, "out of range"},
	{"s3:hang=1s@1s+1s", nil, "no =value"},
	{"s3:hang", nil, "missing @"},
	{"s3:hang@1s", nil, "start+length"},
	{"s3:hang@-1s+1s", nil, "out of range"},
	{"s3:hang@1s+0s", nil, "out of range"},
	{"s3:hang@1s+25h", nil, "out of range"},
	{"s3:hang@x+1s", nil, "start"},
	{strings.Repeat("s3:hang@1s+1s,", maxPhases+1), nil, "more than"},
}

func TestParseFaults(t *testing.T) {
	for _, tc := range parseTests {
		got, err := ParseFaults(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseFaults(%q) error %v, want one containing %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseFaults(%q): %v", tc.spec, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseFaults(%q) = %+v, want %+v", tc.spec, got, tc.want)
		}
		// Round trip through the rendering.
		again, err := ParseFaults(FormatFaults(got))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("round trip of %q via %q: %+v, %v", tc.spec, FormatFaults(got), again, err)
		}
	}
}

// FuzzParseFaults: no panic, and whatever parses renders to a spec that
// parses to the same phases.
func FuzzParseFaults(f *testing.F) {
	for _, tc := range parseTests {
		f.Add(tc.spec)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		phases, err := ParseFaults(spec)
		if err != nil {
			return
		}
		again, err := ParseFaults(FormatFaults(phases))
		if err != nil {
			t.Fatalf("rendering %q of %q does not parse: %v", FormatFaults(phases), spec, err)
		}
		if len(again) != len(phases) || (len(phases) > 0 && !reflect.DeepEqual(again, phases)) {
			t.Fatalf("round trip of %q: %+v, want %+v", spec, again, phases)
		}
		for _, p := range phases {
			if p.Start < 0 || p.Length <= 0 || (p.Kind == KindLatency) != (p.Latency > 0) {
				t.Fatalf("%q parsed to an invalid phase %+v", spec, p)
			}
		}
	})
}

func TestValidate(t *testing.T) {
	hang := Phase{Target: TargetS3, Kind: KindHang, Start: time.Second, Length: time.Second}
	for _, tc := range []struct {
		name string
		s    Scenario
		ok   bool
	}{
		{"ok", Scenario{Rate: 10, Duration: 3 * time.Second, Faults: []Phase{hang}}, true},
		{"no rate", Scenario{Duration: time.Second}, false},
		{"rate too high", Scenario{Rate: MaxRate + 1, Duration: time.Second}, false},
		{"too long", Scenario{Rate: 1, Duration: MaxDuration + time.Second}, false},
		{"too many", Scenario{Rate: MaxRate, Duration: MaxDuration}, false},
		{"fault after load", Scenario{Rate: 10, Duration: 1500 * time.Millisecond, Faults: []Phase{hang}}, false},
		{"latency without duration", Scenario{Rate: 10, Duration: 3 * time.Second, Faults: []Phase{{Target: TargetS3, Kind: KindLatency, Length: time.Second}}}, false},
		{"unknown target", Scenario{Rate: 10, Duration: 3 * time.Second, Faults: []Phase{{Target: "sqs", Kind: KindHang, Length: time.Second}}}, false},
	} {
		err := tc.s.withDefaults().Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
