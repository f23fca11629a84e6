package telemetry

import (
	"strings"
	"testing"
	"time"
)

func TestSpoolMetrics(t *testing.T) {
	m := NewMetrics()
	st := SpoolStats{DeadLetters: 7, DeadLetterBytes: 70, OldestDeadLetter: time.Now().Add(-time.Hour)}
	expired := SpoolMetrics(m, func() SpoolStats { return st })
	expired(3)
	// A second call (a relay restarted with the same Metrics) replaces the
	// source and keeps the counter.
	expired = SpoolMetrics(m, func() SpoolStats { st.StorageOK = true; return st })
	expired(2)
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "mailrelay_deadletter") && !strings.HasPrefix(mf.GetName(), "mailrelay_spool") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			got[mf.GetName()] = mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"mailrelay_deadletters":               7,
		"mailrelay_deadletter_bytes":          70,
		"mailrelay_deadletters_expired_total": 5,
		"mailrelay_spool_storage_ok":          1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if age := got["mailrelay_deadletter_oldest_age_seconds"]; age < 3599 || age > 3700 {
		t.Errorf("oldest dead letter age %v, want about 3600", age)
	}
}
