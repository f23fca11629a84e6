package sesnotify

import (
	"encoding/json"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

// BenchmarkParse decodes received_s3.json (compacted, as the spool keeps
// it) with Parse and ParseBrief.
func BenchmarkParse(b *testing.B) {
	var n Notification
	if err := json.Unmarshal(mailtest.Notification("received_s3.json"), &n); err != nil {
		b.Fatal(err)
	}
	payload, err := json.Marshal(&n)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range []struct {
		name  string
		parse func([]byte) (*Notification, error)
	}{{"full", Parse}, {"brief", ParseBrief}} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.parse(payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
