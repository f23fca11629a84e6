package rewrite

import "testing"

// FuzzIsDeliveryReport checks isDeliveryReport's shortcut against the
// parse it skips.
func FuzzIsDeliveryReport(f *testing.F) {
	for _, v := range []string{
		"text/plain", "multipart/report; report-type=delivery-status", " Multipart/Report ;report-type=\"global-delivery-status\"",
		"message/delivery-status", "MESSAGE/GLOBAL-DELIVERY-STATUS", "multipart/report; report-type=disposition-notification",
		"multipart/report; report-type=delivery-status; report-type=x", "multipart/mixed; boundary=b", "",
		"message/dEl\u0130very-status", "\u212aultipart/report; report-type=delivery-status", "message/delivery-status\x00",
		"multipart/report\t; report-type=delivery-status", "\xffmultipart/report; report-type=delivery-status",
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := isDeliveryReport(v), parseDeliveryReport(v); got != want {
			t.Fatalf("isDeliveryReport(%q) = %v, the parse says %v", v, got, want)
		}
	})
}
