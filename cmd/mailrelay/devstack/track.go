package devstack

import (
	"crypto/sha256"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
)

// States of a mail pushed through the playground, as Status reports them.
const (
	StatePending      = "pending"       // spooled, being worked on or waiting for a retry
	StateForwarded    = "forwarded"     // finished; Outbox lists the copies
	StateDropped      = "dropped"       // finished without a copy (unknown alias, not our domain, verdict)
	StateDeadLettered = "dead_lettered" // failed permanently; kept for an operator (admin API)
	StateRefused      = "refused"       // the relay did not acknowledge the delivery: nothing was spooled
)

// maxRecords bounds the mails the playground remembers; the oldest are
// forgotten first.
const maxRecords = 10000

// Copy is one forwarded copy of a mail, as the fake SES received it.
type Copy struct {
	Path string   `json:"path"` // the .eml in the outbox (absolute)
	From string   `json:"from"` // the alias it was sent as
	To   []string `json:"to"`   // envelope destinations
}

// record is a mail pushed through the playground.
type record struct {
	sesID, snsID, key string
	at                time.Time
	messageID         string
	bodySum           [sha256.Size]byte
	hasBody           bool
	recipients        map[string]bool // normalised recipients
	copies            []Copy          // forwarded copies, in send order
	copyKeys          map[string]bool // alias>destinations already attributed
	finished          bool            // the relay deleted the S3 object
	refused           bool            // the relay did not answer 200
}

// tracker matches the copies the fake SES accepts to the mails the
// playground pushed. The relay keeps Message-ID and passes the body through
// byte for byte, and sends each copy with the alias (the recipient) as
// From: a copy belongs to the oldest unfinished mail with the same
// Message-ID and body that was addressed to that alias and has no such copy
// yet.
type tracker struct {
	outbox string

	mu    sync.Mutex
	recs  map[string]*record // by SES message id
	order []string           // SES message ids, oldest first
}

func newTracker(outbox string) *tracker {
	return &tracker{outbox: outbox, recs: map[string]*record{}}
}

func (t *tracker) add(r *record) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recs[r.sesID] = r
	t.order = append(t.order, r.sesID)
	if len(t.order) > maxRecords {
		delete(t.recs, t.order[0])
		t.order = slices.Delete(t.order, 0, 1)
	}
}

func (t *tracker) get(sesID string) (record, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.recs[sesID]
	if !ok {
		return record{}, false
	}
	c := *r
	c.copies = slices.Clone(r.copies)
	return c, true
}

// markFinished records that sesID's S3 object is gone: no more copies come.
func (t *tracker) markFinished(sesID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.recs[sesID]; ok {
		r.finished = true
	}
}

// refused records that the relay did not acknowledge sesID's delivery.
func (t *tracker) refused(sesID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.recs[sesID]; ok {
		r.refused = true
	}
}

// observe is the fake SES's OnSend hook. It never fails a send.
func (t *tracker) observe(s fakes.Sent) error {
	m := parseMail(s.Raw)
	if !m.ok {
		return nil
	}
	alias := s.Source
	if from := m.addresses("From"); len(from) > 0 {
		alias = from[0].Address
	}
	alias = normAddress(alias)
	dests := slices.Clone(s.Destinations)
	slices.Sort(dests)
	copyKey := alias + ">" + strings.Join(dests, ",")
	msgID := m.messageID()
	path := filepath.Join(t.outbox, s.ID+".eml")

	t.mu.Lock()
	defer t.mu.Unlock()
	var best, fallback *record
	for _, id := range t.order {
		r := t.recs[id]
		if r.finished || r.refused || !r.hasBody || r.bodySum != m.bodySum || r.messageID != msgID {
			continue
		}
		if fallback == nil {
			fallback = r
		}
		if r.recipients[alias] && !r.copyKeys[copyKey] {
			best = r
			break
		}
	}
	if best == nil {
		// A catch-all alias on a +tag address, or a copy sent again after
		// a failed attempt: the oldest candidate is the best guess.
		best = fallback
	}
	if best != nil {
		best.copyKeys[copyKey] = true
		best.copies = append(best.copies, Copy{Path: path, From: alias, To: dests})
	}
	return nil
}
