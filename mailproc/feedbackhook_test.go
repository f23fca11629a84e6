package mailproc

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/sqlitestore"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

func hardBounce(dest string) []byte {
	return []byte(fmt.Sprintf(`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":%q}],"timestamp":"2026-03-01T12:00:00Z","feedbackId":"b1"},
"mail":{"messageId":"out-1","source":"sales@relay.example.com","destination":[%q]}}`, dest, dest))
}

func complaintAbout(id, alias string) []byte {
	return []byte(fmt.Sprintf(`{"eventType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"bob@example.org"}],"timestamp":"2026-03-01T12:00:00Z","feedbackId":%q},
"mail":{"messageId":"out-%s","source":%q,"destination":["bob@example.org"],"commonHeaders":{"from":["Dora via relay <%s>"]}}}`, id, id, alias, alias))
}

// Feedback through the pool: notifications are recorded (finished, no
// mail count), and mail for a paused destination is dead-lettered
// destination_paused before its download, mail for a disabled alias dropped.
func TestFeedbackThroughThePool(t *testing.T) {
	ctx := context.Background()
	store, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	table, err := aliases.Parse([]byte(aliasYAML))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *Config) {
		c.Feedback = feedback.NewHandler(feedback.Options{Store: store, Aliases: table, Now: func() time.Time { return testNow }})
	})
	spamPass := func(n *sesnotify.Notification) { n.Receipt.SpamVerdict.Status = "PASS" }

	e.run(ctx, newEntry("fb-1", hardBounce("carol@example.org")))
	if len(e.q.completed) != 1 {
		t.Fatalf("bounce not completed: dead %v retries %v", e.q.dead, e.q.retries)
	}
	e.run(ctx, newEntry("m-1", s3Notification(t, spamPass, "sales@relay.example.com")))
	if len(e.q.dead) != 1 || !strings.HasPrefix(e.q.dead[0].reason, "destination_paused") {
		t.Fatalf("mail to a paused destination: dead %v", e.q.dead)
	}
	if gets, _ := e.objects.counts(); gets != 0 || e.sender.numCalls() != 0 {
		t.Errorf("paused: %d downloads, %d sends", gets, e.sender.numCalls())
	}

	for i := range 3 {
		e.run(ctx, newEntry(fmt.Sprintf("fb-c%d", i), complaintAbout(fmt.Sprint(i), "shop@relay.example.com")))
	}
	e.run(ctx, newEntry("m-2", s3Notification(t, spamPass, "shop@relay.example.com")))
	if e.sender.numCalls() != 0 {
		t.Errorf("mail to a disabled alias sent")
	}
	if got := messageCounts(t, e.metrics)["dropped/alias_disabled"]; got != 1 {
		t.Errorf("dropped/alias_disabled = %v, want 1 (counts %v)", got, messageCounts(t, e.metrics))
	}
	if len(e.q.completed) != 5 {
		t.Errorf("%d completed, want 5 (4 feedback, 1 dropped mail)", len(e.q.completed))
	}
}
