package sesnotify

import (
	"encoding/json"
	"time"
)

// Received returns the "Received" notification SES publishes when a receipt
// rule whose action is action accepts a mail for recipients: the one shape
// every builder starts from — reconcile, the playground, the load generator
// and the tests. The SES message id names the mail (and, for the S3 action,
// is the last element of its object key). Verdicts are left out, as after
// the fact they are not known; Pass sets them all to PASS.
func Received(sesMessageID string, at time.Time, recipients []string, action Action) *Notification {
	if recipients == nil {
		recipients = []string{}
	}
	at = at.UTC()
	return &Notification{
		NotificationType: TypeReceived,
		Mail: Mail{
			Timestamp:   at,
			MessageID:   sesMessageID,
			Destination: recipients,
		},
		Receipt: &Receipt{
			Timestamp:  at,
			Recipients: recipients,
			Action:     action,
		},
	}
}

// S3Action is the receipt action of a mail stored at bucket/key and
// announced on topicARN.
func S3Action(topicARN, bucket, key string) Action {
	return Action{Type: ActionS3, TopicArn: topicARN, BucketName: bucket, ObjectKey: key}
}

// Pass sets every verdict of a Received notification to PASS and returns n.
func (n *Notification) Pass() *Notification {
	pass := Verdict{Status: StatusPass}
	r := n.Receipt
	r.SpamVerdict, r.VirusVerdict, r.SPFVerdict, r.DKIMVerdict, r.DMARCVerdict = pass, pass, pass, pass, pass
	return n
}

// Unverified sets every verdict of a Received notification (spam, virus,
// SPF, DKIM, DMARC) to PROCESSING_FAILED and returns n: SES's own word for
// a check that could not be done. Reconcile builds notifications so after
// the fact, when the verdicts SES gave are not known: the relay's policy
// then decides (mailproc.Policy.HoldUnverified dead-letters such mail).
func (n *Notification) Unverified() *Notification {
	pf := Verdict{Status: StatusProcessingFail}
	r := n.Receipt
	r.SpamVerdict, r.VirusVerdict, r.SPFVerdict, r.DKIMVerdict, r.DMARCVerdict = pf, pf, pf, pf, pf
	return n
}

// JSON is n as SES publishes it (the SNS Message field).
func (n *Notification) JSON() []byte {
	b, err := json.Marshal(n)
	if err != nil {
		// Only strings, slices, times and raw JSON that was parsed before:
		// a failure is a programming error.
		panic("sesnotify: marshal notification: " + err.Error())
	}
	return b
}
