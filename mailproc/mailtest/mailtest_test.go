package mailtest

import (
	"encoding/json"
	"testing"
)

func TestFixtures(t *testing.T) {
	for _, name := range []string{"received_s3.json", "received_sns_utf8.json", "received_sns_base64.json", "bounce.json", "complaint.json"} {
		if !json.Valid(Notification(name)) {
			t.Errorf("%s: not JSON", name)
		}
	}
	if len(ReceivedMail()) == 0 {
		t.Error("no inline mail")
	}
	all, edge, shapes, public := Corpus(), Corpus(SetEdge), Corpus(SetShapes), Corpus(SetPublic)
	if len(edge) < 12 || len(shapes) < 12 || len(public) != 5 || len(all) != len(edge)+len(shapes)+len(public) {
		t.Fatalf("corpus: %d mails (%d edge, %d shapes, %d public)", len(all), len(edge), len(shapes), len(public))
	}
	seen := map[string]bool{}
	malformed := 0
	for _, f := range all {
		if seen[f.Name] {
			t.Errorf("%s twice: Mail(name) would be ambiguous", f.Name)
		}
		seen[f.Name] = true
		if string(Mail(f.Name)) != string(f.Raw) {
			t.Errorf("Mail(%q) differs from the corpus", f.Name)
		}
		if f.Malformed() {
			malformed++
		}
	}
	if malformed == 0 {
		t.Error("no malformed mail in the corpus")
	}
	Mail("plain.eml")[0] = 'x'
	if Mail("plain.eml")[0] == 'x' {
		t.Error("Mail hands out the embedded bytes")
	}
}
