package deploy

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

const terraformDir = "terraform"

// prodVars are values for the variables without a default.
var prodVars = map[string]cty.Value{
	"relay_domains":      cty.ListVal([]cty.Value{cty.StringVal("relay.example.com")}),
	"relay_endpoint_url": cty.StringVal("https://relay.example.com/sns"),
	"oidc_provider_arn":  cty.StringVal("arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"),
}

func loadTerraform(t *testing.T) (*Terraform, *hcl.EvalContext) {
	t.Helper()
	tf, err := LoadTerraform(terraformDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, err := tf.EvalContext(prodVars)
	if err != nil {
		t.Fatal(err)
	}
	return tf, ctx
}

func one(t *testing.T, tf *Terraform, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	bs := tf.Find(typ, labels...)
	if len(bs) != 1 {
		t.Fatalf("%s %v: %d blocks, want 1", typ, labels, len(bs))
	}
	return bs[0]
}

func eval(t *testing.T, ctx *hcl.EvalContext, b *hclsyntax.Block, attr string) cty.Value {
	t.Helper()
	a, ok := b.Body.Attributes[attr]
	if !ok {
		t.Fatalf("%s %v has no %s", b.Type, b.Labels, attr)
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s %v %s: %v", b.Type, b.Labels, attr, diags)
	}
	return v
}

func children(b *hclsyntax.Block, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, c := range b.Body.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

func TestTerraformVariablesDocumented(t *testing.T) {
	tf, _ := loadTerraform(t)
	vars := tf.Find("variable")
	if len(vars) == 0 {
		t.Fatal("no variables")
	}
	for _, b := range vars {
		d, ok := b.Body.Attributes["description"]
		if !ok {
			t.Errorf("variable %s has no description", b.Labels[0])
			continue
		}
		v, diags := d.Expr.Value(nil)
		if diags.HasErrors() || v.Type() != cty.String || len(strings.TrimSpace(v.AsString())) < 10 {
			t.Errorf("variable %s: description must be a real sentence", b.Labels[0])
		}
		if _, ok := b.Body.Attributes["type"]; !ok {
			t.Errorf("variable %s has no type", b.Labels[0])
		}
	}
	for _, b := range tf.Find("output") {
		if _, ok := b.Body.Attributes["description"]; !ok {
			t.Errorf("output %s has no description", b.Labels[0])
		}
	}
}

func TestTerraformReferences(t *testing.T) {
	tf, _ := loadTerraform(t)
	if err := tf.CheckReferences(); err != nil {
		t.Error(err)
	}
}

func TestTerraformSNS(t *testing.T) {
	tf, ctx := loadTerraform(t)
	for _, topic := range tf.Find("resource", "aws_sns_topic") {
		if v := eval(t, ctx, topic, "signature_version"); !v.RawEquals(cty.NumberIntVal(2)) {
			t.Errorf("topic %s: signature_version %#v, want 2", topic.Labels[1], v)
		}
	}
	https := map[string]int{} // topic → HTTPS subscriptions
	for _, sub := range tf.Find("resource", "aws_sns_topic_subscription") {
		if v := eval(t, ctx, sub, "protocol"); v.AsString() != "https" {
			continue
		}
		for _, topic := range []string{"inbound", "feedback"} {
			if refers(sub, "topic_arn", "aws_sns_topic", topic) {
				https[topic]++
			}
		}
		if !refers(sub, "endpoint", "var", "relay_endpoint_url") {
			t.Errorf("HTTPS subscription %s is not to the relay's endpoint", sub.Labels[1])
		}
		if v := eval(t, ctx, sub, "raw_message_delivery"); v.True() {
			t.Error("raw_message_delivery: the relay needs the signed SNS envelope")
		}
		// The dead-letter queue must be one of ours.
		rp, ok := sub.Body.Attributes["redrive_policy"]
		if !ok {
			t.Fatal("HTTPS subscription has no redrive_policy: after the hour of retries SNS would drop the notification")
		}
		var dlq bool
		for _, tr := range rp.Expr.Variables() {
			if tr.RootName() == "aws_sqs_queue" {
				dlq = len(tf.Find("resource", "aws_sqs_queue", traverseName(tr, 1))) == 1
			}
		}
		if !dlq {
			t.Error("redrive_policy does not name an aws_sqs_queue of the module")
		}
		// The delivery policy retries for SNS's full hour and no more (SNS refuses more).
		dp := eval(t, ctx, sub, "delivery_policy")
		if !dp.IsKnown() || dp.Type() != cty.String {
			t.Fatalf("delivery_policy does not evaluate to JSON before apply: %#v", dp)
		}
		p, err := ParseDeliveryPolicy([]byte(dp.AsString()))
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := p.HealthyRetryPolicy.RetryWindow()
		if lo < SNSMaxRetryWindow || hi > SNSMaxRetryWindow {
			t.Errorf("delivery policy retries for %v..%v, want exactly %v", lo, hi, SNSMaxRetryWindow)
		}
	}
	// The relay is subscribed to the inbound topic (mail) and the feedback
	// topic (SES bounces and complaints), once each.
	if https["inbound"] != 1 || https["feedback"] != 1 || len(https) != 2 {
		t.Errorf("HTTPS subscriptions by topic %v, want one to inbound and one to feedback", https)
	}
	// Both topics may dead-letter into the queue.
	for _, st := range children(one(t, tf, "data", "aws_iam_policy_document", "sns_dlq"), "statement") {
		for _, c := range children(st, "condition") {
			if !refers(c, "values", "aws_sns_topic", "inbound") || !refers(c, "values", "aws_sns_topic", "feedback") {
				t.Error("the dead-letter queue policy must allow the inbound and the feedback topic")
			}
		}
	}

	// The queue policy lets SNS deliver dead letters.
	doc := one(t, tf, "data", "aws_iam_policy_document", "sns_dlq")
	var sns bool
	for _, st := range children(doc, "statement") {
		for _, pr := range children(st, "principals") {
			ids := eval(t, ctx, pr, "identifiers")
			for it := ids.ElementIterator(); it.Next(); {
				_, v := it.Element()
				sns = sns || v.AsString() == "sns.amazonaws.com"
			}
		}
	}
	if !sns {
		t.Error("the dead-letter queue policy does not allow sns.amazonaws.com")
	}
	one(t, tf, "resource", "aws_sqs_queue_policy", "sns_dlq")
}

func TestTerraformS3AndSES(t *testing.T) {
	tf, ctx := loadTerraform(t)
	pab := one(t, tf, "resource", "aws_s3_bucket_public_access_block", "inbound")
	for _, a := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
		if !eval(t, ctx, pab, a).True() {
			t.Errorf("public access block: %s is not true", a)
		}
	}
	sse := one(t, tf, "resource", "aws_s3_bucket_server_side_encryption_configuration", "inbound")
	if len(children(sse, "rule")) != 1 || len(children(children(sse, "rule")[0], "apply_server_side_encryption_by_default")) != 1 {
		t.Error("bucket has no default encryption")
	}
	lc := one(t, tf, "resource", "aws_s3_bucket_lifecycle_configuration", "inbound")
	var expiry bool
	for _, r := range children(lc, "rule") {
		for _, e := range children(r, "expiration") {
			expiry = expiry || eval(t, ctx, e, "days").AsBigFloat().Sign() > 0
		}
	}
	if !expiry {
		t.Error("bucket has no lifecycle expiry backstop")
	}

	rule := one(t, tf, "resource", "aws_ses_receipt_rule", "relay")
	if !eval(t, ctx, rule, "scan_enabled").True() {
		t.Error("receipt rule does not scan: the relay's spam and virus verdicts would be missing")
	}
	s3a := children(rule, "s3_action")
	if len(s3a) != 1 {
		t.Fatal("receipt rule has no S3 action")
	}
	if _, ok := s3a[0].Body.Attributes["topic_arn"]; !ok {
		t.Error("S3 action notifies no topic")
	}
	ed := one(t, tf, "resource", "aws_sesv2_configuration_set_event_destination", "feedback")
	dest := children(ed, "event_destination")
	if len(dest) != 1 || len(children(dest[0], "sns_destination")) != 1 {
		t.Fatal("configuration set event destination is not SNS")
	}
	types := map[string]bool{}
	v := eval(t, ctx, dest[0], "matching_event_types")
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		types[e.AsString()] = true
	}
	if !types["BOUNCE"] || !types["COMPLAINT"] {
		t.Errorf("event types %v, want BOUNCE and COMPLAINT", types)
	}
}

// TestTerraformIAM checks that no policy grants "*" actions and that the
// relay's role is scoped to resources.
func TestTerraformIAM(t *testing.T) {
	tf, ctx := loadTerraform(t)
	for _, doc := range tf.Find("data", "aws_iam_policy_document") {
		for _, st := range children(doc, "statement") {
			if _, ok := st.Body.Attributes["not_actions"]; ok {
				t.Errorf("policy %s: not_actions grants everything else", doc.Labels[1])
			}
			acts := eval(t, ctx, st, "actions")
			if !acts.IsWhollyKnown() || acts.LengthInt() == 0 {
				t.Errorf("policy %s: actions not known before apply", doc.Labels[1])
				continue
			}
			for it := acts.ElementIterator(); it.Next(); {
				_, a := it.Element()
				if strings.Contains(a.AsString(), "*") {
					t.Errorf("policy %s grants %q", doc.Labels[1], a.AsString())
				}
			}
		}
	}
	relay := one(t, tf, "data", "aws_iam_policy_document", "relay")
	granted := map[string]bool{}
	for _, st := range children(relay, "statement") {
		acts := eval(t, ctx, st, "actions")
		res := eval(t, ctx, st, "resources")
		for it := res.ElementIterator(); it.Next(); {
			_, r := it.Element()
			if r.IsKnown() && r.AsString() == "*" && !onlyActions(acts, resourcelessReadActions) {
				t.Errorf("relay policy statement on every resource, for %q", stringList(t, acts))
			}
		}
		for it := acts.ElementIterator(); it.Next(); {
			_, a := it.Element()
			granted[a.AsString()] = true
		}
	}
	for _, want := range []string{"s3:GetObject", "s3:DeleteObject", "ses:SendRawEmail", "sqs:ReceiveMessage", "sqs:DeleteMessage", "ses:GetSendQuota", "ses:GetAccount"} {
		if !granted[want] {
			t.Errorf("relay role lacks %s", want)
		}
	}
	for a := range granted {
		if strings.HasPrefix(a, "s3:Put") || strings.HasPrefix(a, "iam:") || a == "sqs:SendMessage" {
			t.Errorf("relay role has %s, which it does not need", a)
		}
	}
	// Policies are policy documents, not hand-written JSON that the checks above would miss.
	for _, typ := range []string{"aws_iam_role_policy", "aws_iam_policy", "aws_s3_bucket_policy", "aws_sns_topic_policy", "aws_sqs_queue_policy"} {
		for _, b := range tf.Find("resource", typ) {
			attr := "policy"
			if _, ok := b.Body.Attributes[attr]; !ok {
				t.Errorf("%s %s has no policy", typ, b.Labels[1])
				continue
			}
			var doc bool
			for _, tr := range b.Body.Attributes[attr].Expr.Variables() {
				doc = doc || (tr.RootName() == "data" && traverseName(tr, 1) == "aws_iam_policy_document")
			}
			if !doc {
				t.Errorf("%s %s: policy is not a data.aws_iam_policy_document", typ, b.Labels[1])
			}
		}
	}
	trust := one(t, tf, "data", "aws_iam_policy_document", "relay_trust")
	if got := eval(t, ctx, children(trust, "statement")[0], "actions"); got.LengthInt() != 1 ||
		got.Index(cty.NumberIntVal(0)).AsString() != "sts:AssumeRoleWithWebIdentity" {
		t.Errorf("trust policy actions %#v, want sts:AssumeRoleWithWebIdentity", got)
	}
}

// resourcelessReadActions are the only actions a relay policy statement
// may grant on Resource "*": read-only account queries that take no
// resource (IAM accepts only "*" for them) — the SES sending quota the
// sending pace follows (SES GetSendQuota, SESv2 GetAccount).
var resourcelessReadActions = map[string]bool{"ses:GetSendQuota": true, "ses:GetAccount": true}

// onlyActions reports whether every action of acts is in allowed.
func onlyActions(acts cty.Value, allowed map[string]bool) bool {
	if !acts.IsWhollyKnown() || acts.LengthInt() == 0 {
		return false
	}
	for it := acts.ElementIterator(); it.Next(); {
		_, a := it.Element()
		if !allowed[a.AsString()] {
			return false
		}
	}
	return true
}

func TestRetryWindow(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      HealthyRetryPolicy
		lo, hi time.Duration
		bad    bool
	}{
		{"no backoff phase", HealthyRetryPolicy{MinDelayTarget: 5, MaxDelayTarget: 60, NumRetries: 71, NumMinDelayRetries: 12, NumMaxDelayRetries: 59, BackoffFunction: "linear"}, time.Hour, time.Hour, false},
		{"sns default", HealthyRetryPolicy{MinDelayTarget: 20, MaxDelayTarget: 20, NumRetries: 3, BackoffFunction: "linear"}, time.Minute, time.Minute, false},
		{"backoff bounds", HealthyRetryPolicy{MinDelayTarget: 1, MaxDelayTarget: 10, NumRetries: 10, NumNoDelayRetries: 2, BackoffFunction: "exponential"}, 8 * time.Second, 80 * time.Second, false},
		{"phases exceed total", HealthyRetryPolicy{MinDelayTarget: 1, MaxDelayTarget: 10, NumRetries: 3, NumMaxDelayRetries: 4, BackoffFunction: "linear"}, 0, 0, true},
		{"max below min", HealthyRetryPolicy{MinDelayTarget: 10, MaxDelayTarget: 5, NumRetries: 3, BackoffFunction: "linear"}, 0, 0, true},
		{"too many retries", HealthyRetryPolicy{MinDelayTarget: 1, MaxDelayTarget: 5, NumRetries: 101, BackoffFunction: "linear"}, 0, 0, true},
		{"unknown backoff", HealthyRetryPolicy{MinDelayTarget: 1, MaxDelayTarget: 5, NumRetries: 1, BackoffFunction: "cubic"}, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if (err != nil) != tc.bad {
				t.Fatalf("Validate: %v, want error %v", err, tc.bad)
			}
			if tc.bad {
				return
			}
			lo, hi := tc.p.RetryWindow()
			if lo != tc.lo || hi != tc.hi {
				t.Errorf("RetryWindow %v..%v, want %v..%v", lo, hi, tc.lo, tc.hi)
			}
		})
	}
}

var deliveryPolicySeeds = []string{
	`{"healthyRetryPolicy":{"minDelayTarget":5,"maxDelayTarget":60,"numRetries":71,"numNoDelayRetries":0,"numMinDelayRetries":12,"numMaxDelayRetries":59,"backoffFunction":"linear"},"requestPolicy":{"headerContentType":"text/plain; charset=UTF-8"}}`,
	`{"healthyRetryPolicy":{"minDelayTarget":20,"maxDelayTarget":20,"numRetries":3,"backoffFunction":"linear"},"throttlePolicy":{"maxReceivesPerSecond":10}}`,
	`{"healthyRetryPolicy":{"minDelayTarget":1,"maxDelayTarget":3600,"numRetries":100,"backoffFunction":"exponential"}}`,
	`{"healthyRetryPolicy":{"minDelayTarget":5},"unknown":1}`,
	`{}`,
	`{"healthyRetryPolicy":null}`,
	`{"healthyRetryPolicy":{"minDelayTarget":5,"maxDelayTarget":60,"numRetries":71,"backoffFunction":"linear"}} {}`,
}

func TestParseDeliveryPolicy(t *testing.T) {
	for i, s := range deliveryPolicySeeds {
		_, err := ParseDeliveryPolicy([]byte(s))
		if (err == nil) != (i < 3) {
			t.Errorf("seed %d: %v", i, err)
		}
	}
}

func FuzzParseDeliveryPolicy(f *testing.F) {
	for _, s := range deliveryPolicySeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseDeliveryPolicy([]byte(s))
		if err != nil {
			return
		}
		// A valid policy has a sane window: 0 <= lo <= hi <= 100 retries of an hour.
		lo, hi := p.HealthyRetryPolicy.RetryWindow()
		if lo < 0 || lo > hi || hi > 100*time.Hour {
			t.Fatalf("window %v..%v for valid %s", lo, hi, s)
		}
	})
}

// TestTerraformReadmeListsVariables keeps the README's table in step with variables.tf.
func TestTerraformReadmeListsVariables(t *testing.T) {
	tf, _ := loadTerraform(t)
	b, err := os.ReadFile(terraformDir + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range tf.Find("variable") {
		if !strings.Contains(string(b), "| `"+v.Labels[0]+"` |") {
			t.Errorf("README.md does not document variable %s", v.Labels[0])
		}
	}
}
