package deploy

import (
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// The SQS intake is optional (sqs_intake, off by default) and complete when
// on: queue, dead-letter queue with a redrive policy, the topic's
// subscription with raw delivery off, a queue policy for the topic only,
// and the relay's four SQS actions on that queue only.
func TestTerraformSQSIntake(t *testing.T) {
	tf, _ := loadTerraform(t)
	counted := []struct{ typ, name string }{
		{"aws_sqs_queue", "intake"}, {"aws_sqs_queue", "intake_dlq"}, {"aws_sqs_queue_policy", "intake"},
		{"aws_sns_topic_subscription", "intake"}, {"aws_sns_topic_subscription", "intake_feedback"}, {"aws_iam_role_policy", "relay_intake"},
	}
	for _, on := range []bool{false, true} {
		vars := map[string]cty.Value{"sqs_intake": cty.BoolVal(on)}
		for k, v := range prodVars {
			vars[k] = v
		}
		ctx, err := tf.EvalContext(vars)
		if err != nil {
			t.Fatal(err)
		}
		want := cty.NumberIntVal(0)
		if on {
			want = cty.NumberIntVal(1)
		}
		for _, c := range counted {
			if got := eval(t, ctx, one(t, tf, "resource", c.typ, c.name), "count"); !got.RawEquals(want) {
				t.Errorf("sqs_intake=%v: %s.%s count %#v, want %#v", on, c.typ, c.name, got, want)
			}
		}
	}
	_, ctx := loadTerraform(t)
	if v := eval(t, ctx, one(t, tf, "variable", "sqs_intake"), "default"); v.True() {
		t.Error("sqs_intake must default to false (the HTTPS subscription is the default intake)")
	}

	sub := one(t, tf, "resource", "aws_sns_topic_subscription", "intake")
	if v := eval(t, ctx, sub, "protocol"); v.AsString() != "sqs" {
		t.Errorf("intake subscription protocol %q", v.AsString())
	}
	if v := eval(t, ctx, sub, "raw_message_delivery"); v.True() {
		t.Error("raw_message_delivery: the relay verifies the signed SNS envelope")
	}
	if !refers(sub, "endpoint", "aws_sqs_queue", "intake") || !refers(sub, "topic_arn", "aws_sns_topic", "inbound") {
		t.Error("the subscription must deliver the inbound topic to the intake queue")
	}
	q := one(t, tf, "resource", "aws_sqs_queue", "intake")
	if !refers(q, "redrive_policy", "aws_sqs_queue", "intake_dlq") || !refers(q, "redrive_policy", "var", "sqs_max_receive_count") {
		t.Error("the intake queue needs a redrive policy to intake_dlq with maxReceiveCount sqs_max_receive_count")
	}
	if v := eval(t, ctx, q, "sqs_managed_sse_enabled"); !v.True() {
		t.Error("intake queue not encrypted")
	}

	// Only the inbound topic may send to the queue.
	doc := one(t, tf, "data", "aws_iam_policy_document", "intake_queue")
	sts := children(doc, "statement")
	if len(sts) != 1 {
		t.Fatalf("intake queue policy: %d statements", len(sts))
	}
	if got := stringList(t, eval(t, ctx, sts[0], "actions")); !slices.Equal(got, []string{"sqs:SendMessage"}) {
		t.Errorf("intake queue policy actions %q", got)
	}
	pr := children(sts[0], "principals")
	if len(pr) != 1 || !slices.Equal(stringList(t, eval(t, ctx, pr[0], "identifiers")), []string{"sns.amazonaws.com"}) {
		t.Error("intake queue policy principal must be sns.amazonaws.com")
	}
	conds := children(sts[0], "condition")
	if len(conds) != 1 || !refers(conds[0], "values", "aws_sns_topic", "inbound") || !refers(conds[0], "values", "aws_sns_topic", "feedback") {
		t.Error("intake queue policy must be conditioned on the inbound and feedback topics' ARNs")
	}
	fsub := one(t, tf, "resource", "aws_sns_topic_subscription", "intake_feedback")
	if !refers(fsub, "endpoint", "aws_sqs_queue", "intake") || !refers(fsub, "topic_arn", "aws_sns_topic", "feedback") || eval(t, ctx, fsub, "raw_message_delivery").True() {
		t.Error("the feedback topic must deliver to the intake queue, raw delivery off")
	}

	// The relay reads the queue and nothing more.
	relay := one(t, tf, "data", "aws_iam_policy_document", "relay_intake")
	var granted []string
	for _, st := range children(relay, "statement") {
		granted = append(granted, stringList(t, eval(t, ctx, st, "actions"))...)
	}
	slices.Sort(granted)
	want := []string{"sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"}
	if !slices.Equal(granted, want) {
		t.Errorf("relay SQS intake actions %q, want %q", granted, want)
	}
	if !refers(one(t, tf, "resource", "aws_iam_role_policy", "relay_intake"), "role", "aws_iam_role", "relay") {
		t.Error("the intake policy must be attached to the relay's role")
	}
}

// refers reports whether b's attribute attr refers to root.name.
func refers(b *hclsyntax.Block, attr, root, name string) bool {
	a, ok := b.Body.Attributes[attr]
	if !ok {
		return false
	}
	for _, tr := range a.Expr.Variables() {
		if tr.RootName() == root && traverseName(tr, 1) == name {
			return true
		}
	}
	return false
}

// stringList lists a list or set of strings.
func stringList(t *testing.T, v cty.Value) []string {
	t.Helper()
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}
