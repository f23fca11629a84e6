// Package mailtest holds test fixtures of real-shaped mail and SES
// notifications, embedded once for every test that needs them (mailproc,
// sesnotify, rewrite, the relay's and the LocalStack end-to-end tests):
//
//   - ses/: SES notifications as SES publishes them — Received with the S3
//     action and with the SNS action (UTF8 and BASE64, carrying mail.eml),
//     Bounce and Complaint, and the mail they describe. See Notification
//     and ReceivedMail.
//   - mail/edge/: hand-made edge cases of the rewrite (malformed headers,
//     header injection, encodings, multiple From, ...); names starting with
//     "malformed" have a header block no parser accepts (SetEdge).
//   - mail/shapes/: ordinary mail in the shapes mail clients send
//     (charsets, transfer encodings, attachments, calendars, ...) (SetShapes).
//   - mail/public/: real mails from a public corpus, with their source and
//     licence in mail/public/SOURCE.md (SetPublic): spam whose header carries
//     MIME-Version twice.
//
// Accessors return copies: a test may change what it gets. A name that is
// not a fixture panics (a typo in a test).
package mailtest

import (
	"embed"
	"io/fs"
	"path"
	"slices"
	"strings"
)

//go:embed ses mail
var files embed.FS

// The sets of mail in the corpus, the Set of a Fixture.
const (
	SetEdge   = "edge"
	SetShapes = "shapes"
	SetPublic = "public"
)

// Fixture is one mail of the corpus.
type Fixture struct {
	Name string // file name, e.g. "plain.eml"; unique across sets
	Set  string // SetEdge, SetShapes or SetPublic
	Raw  []byte // the mail as stored in S3
}

// Malformed reports whether the mail's header block is one no parser
// accepts: the relay dead-letters it (reason malformed_mail).
func (f Fixture) Malformed() bool { return strings.HasPrefix(f.Name, "malformed") }

// Notification returns the SES notification in ses/name, e.g.
// "received_s3.json", "received_sns_utf8.json", "received_sns_base64.json",
// "bounce.json", "complaint.json".
func Notification(name string) []byte { return read(path.Join("ses", name)) }

// ReceivedMail returns the mail the Received notifications describe: the
// content the SNS-action ones carry (received_sns_utf8.json,
// received_sns_base64.json), and the object of received_s3.json.
func ReceivedMail() []byte { return read("ses/mail.eml") }

// Mail returns the corpus mail named name, from either set.
func Mail(name string) []byte {
	for _, set := range []string{SetEdge, SetShapes, SetPublic} {
		if b, err := files.ReadFile(path.Join("mail", set, name)); err == nil {
			return b
		}
	}
	panic("mailtest: no mail " + name)
}

// Corpus returns the mails of the given sets (every set when none), sorted
// by name.
func Corpus(sets ...string) []Fixture {
	if len(sets) == 0 {
		sets = []string{SetEdge, SetShapes, SetPublic}
	}
	var out []Fixture
	for _, set := range sets {
		entries, err := fs.ReadDir(files, path.Join("mail", set))
		if err != nil {
			panic("mailtest: no set " + set)
		}
		for _, e := range entries {
			if e.IsDir() || path.Ext(e.Name()) != ".eml" {
				continue
			}
			out = append(out, Fixture{Name: e.Name(), Set: set, Raw: read(path.Join("mail", set, e.Name()))})
		}
	}
	slices.SortFunc(out, func(a, b Fixture) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// read returns a copy of the embedded file p (embed.FS hands out copies).
func read(p string) []byte {
	b, err := files.ReadFile(p)
	if err != nil {
		panic("mailtest: " + err.Error())
	}
	return b
}
