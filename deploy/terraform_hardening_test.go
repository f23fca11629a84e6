package deploy

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// strings of a list or set value.
func ctyStrings(v cty.Value) map[string]bool {
	out := map[string]bool{}
	if !v.IsKnown() || v.IsNull() {
		return out
	}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsKnown() && !e.IsNull() && e.Type() == cty.String {
			out[e.AsString()] = true
		}
	}
	return out
}

// refersTo reports whether attribute attr of b refers to a resource or data
// source of type typ (and name, if given).
func refersTo(b *hclsyntax.Block, attr, root, typ, name string) bool {
	a, ok := b.Body.Attributes[attr]
	if !ok {
		return false
	}
	for _, tr := range a.Expr.Variables() {
		switch {
		case root == "resource" && tr.RootName() == typ && (name == "" || traverseName(tr, 1) == name):
			return true
		case root == "data" && tr.RootName() == "data" && traverseName(tr, 1) == typ && (name == "" || traverseName(tr, 2) == name):
			return true
		}
	}
	return false
}

// TestTerraformSNSEncryption: both topics take the optional KMS key, which is
// off by default; the key the module creates is rotated and its policy lets
// this account's SES (and no other service) use it for these topics only.
func TestTerraformSNSEncryption(t *testing.T) {
	tf, ctx := loadTerraform(t)
	for _, v := range []string{"kms_master_key_id", "create_sns_kms_key"} {
		b := one(t, tf, "variable", v)
		d, diags := b.Body.Attributes["default"].Expr.Value(nil)
		if diags.HasErrors() || !(d.IsNull() || d.RawEquals(cty.False)) {
			t.Errorf("variable %s defaults to %#v, want null or false (encryption is opt-in)", v, d)
		}
	}
	topics := tf.Find("resource", "aws_sns_topic")
	if len(topics) != 2 {
		t.Errorf("%d topics, want inbound and feedback", len(topics))
	}
	for _, topic := range topics {
		a, ok := topic.Body.Attributes["kms_master_key_id"]
		if !ok {
			t.Errorf("topic %s has no kms_master_key_id", topic.Labels[1])
			continue
		}
		if v := eval(t, ctx, topic, "kms_master_key_id"); !v.IsNull() {
			t.Errorf("topic %s is encrypted by default: %#v", topic.Labels[1], v)
		}
		var viaLocal bool
		for _, tr := range a.Expr.Variables() {
			viaLocal = viaLocal || (tr.RootName() == "local" && traverseName(tr, 1) == "sns_kms_key_id")
		}
		if !viaLocal {
			t.Errorf("topic %s does not take local.sns_kms_key_id", topic.Labels[1])
		}
	}
	// With a key of one's own, the topics use it.
	withKey := map[string]cty.Value{"kms_master_key_id": cty.StringVal("arn:aws:kms:us-east-1:123456789012:key/k")}
	for k, v := range prodVars {
		withKey[k] = v
	}
	ctx2, err := tf.EvalContext(withKey)
	if err != nil {
		t.Fatal(err)
	}
	if v := eval(t, ctx2, topics[0], "kms_master_key_id"); !v.IsKnown() || v.IsNull() || v.AsString() != "arn:aws:kms:us-east-1:123456789012:key/k" {
		t.Errorf("kms_master_key_id does not reach the topic: %#v", v)
	}

	key := one(t, tf, "resource", "aws_kms_key", "sns")
	if !eval(t, ctx, key, "enable_key_rotation").True() {
		t.Error("the SNS key is not rotated")
	}
	if !refersTo(key, "policy", "data", "aws_iam_policy_document", "sns_kms") {
		t.Error("the SNS key's policy is not data.aws_iam_policy_document.sns_kms")
	}
	doc := one(t, tf, "data", "aws_iam_policy_document", "sns_kms")
	if !refersTo(doc, "source_policy_documents", "data", "aws_iam_policy_document", "sns_kms_ses") {
		t.Error("the key policy does not include the SES statement")
	}
	ses := one(t, tf, "data", "aws_iam_policy_document", "sns_kms_ses")
	checkKMSStatements(t, ctx, append(children(ses, "statement"), children(doc, "statement")...))
	one(t, tf, "output", "sns_kms_key_policy_json")
}

func checkKMSStatements(t *testing.T, ctx *hcl.EvalContext, sts []*hclsyntax.Block) {
	t.Helper()
	var sesOK bool
	for _, st := range sts {
		for _, pr := range children(st, "principals") {
			typ := eval(t, ctx, pr, "type").AsString()
			ids := ctyStrings(eval(t, ctx, pr, "identifiers"))
			if typ == "Service" {
				for id := range ids {
					if id != "ses.amazonaws.com" {
						t.Errorf("the key policy grants service %s", id)
					}
				}
				acts := ctyStrings(eval(t, ctx, st, "actions"))
				if !acts["kms:GenerateDataKey"] || !acts["kms:Decrypt"] || len(acts) != 2 {
					t.Errorf("SES may %v on the key, want kms:GenerateDataKey and kms:Decrypt", acts)
				}
				conds := map[string]cty.Value{}
				for _, c := range children(st, "condition") {
					conds[eval(t, ctx, c, "variable").AsString()] = eval(t, ctx, c, "values")
				}
				if _, ok := conds["aws:SourceAccount"]; !ok {
					t.Error("SES's use of the key is not limited to this account (aws:SourceAccount)")
				}
				// The ARNs are unknown before apply (account and region): count them.
				if arns, ok := conds["kms:EncryptionContext:aws:sns:topicArn"]; !ok || !arns.IsKnown() || arns.LengthInt() != 2 {
					t.Errorf("SES's use of the key is not limited to the two topics (kms:EncryptionContext:aws:sns:topicArn): %#v", arns)
				}
				sesOK = true
			}
		}
	}
	if !sesOK {
		t.Error("the key policy does not let SES use the key: SES could not publish to the encrypted topics")
	}
}

// TestTerraformFeedbackForwardingOff: every relay identity sends its Bounce
// and Complaint notifications to the feedback topic and has email feedback
// forwarding off; the feedback topic lets those identities publish.
func TestTerraformFeedbackForwardingOff(t *testing.T) {
	tf, ctx := loadTerraform(t)
	fa := one(t, tf, "resource", "aws_sesv2_email_identity_feedback_attributes", "relay")
	if !refersTo(fa, "for_each", "resource", "aws_sesv2_email_identity", "relay") {
		t.Error("feedback attributes are not set for every aws_sesv2_email_identity.relay")
	}
	if v := eval(t, ctx, fa, "email_forwarding_enabled"); !v.RawEquals(cty.False) {
		t.Errorf("email_forwarding_enabled %#v, want false", v)
	}
	types := map[string]bool{}
	for _, nt := range tf.Find("resource", "aws_ses_identity_notification_topic") {
		if !refersTo(nt, "for_each", "resource", "aws_sesv2_email_identity", "relay") {
			t.Errorf("notification topic %s is not set for every relay identity", nt.Labels[1])
		}
		if !refersTo(nt, "topic_arn", "resource", "aws_sns_topic", "feedback") {
			t.Errorf("notification topic %s does not go to the feedback topic", nt.Labels[1])
		}
		types[eval(t, ctx, nt, "notification_type").AsString()] = true
	}
	if !types["Bounce"] || !types["Complaint"] {
		t.Errorf("identity notification topics for %v, want Bounce and Complaint (SES keeps forwarding on without both)", types)
	}
	dep, ok := fa.Body.Attributes["depends_on"]
	if !ok || len(dep.Expr.Variables()) < 2 {
		t.Error("feedback attributes do not depend on the notification topics (SES refuses forwarding off before they are set)")
	}
	policy := one(t, tf, "data", "aws_iam_policy_document", "feedback_topic")
	var identities bool
	for _, st := range children(policy, "statement") {
		for _, c := range children(st, "condition") {
			if eval(t, ctx, c, "variable").AsString() != "AWS:SourceArn" {
				continue
			}
			// Values unknown before apply: the configuration set and one ARN per identity.
			v := eval(t, ctx, c, "values")
			var refs bool
			for _, tr := range c.Body.Attributes["values"].Expr.Variables() {
				refs = refs || (tr.RootName() == "local" && traverseName(tr, 1) == "identity_arns")
			}
			identities = refs && v.IsKnown() && v.LengthInt() == 1+prodVars["relay_domains"].LengthInt()
		}
	}
	if !identities {
		t.Error("the feedback topic's policy does not let the relay identities publish (local.identity_arns)")
	}
	ids := ctx.Variables["local"].GetAttr("identity_arns")
	if !ids.IsKnown() || ids.LengthInt() != prodVars["relay_domains"].LengthInt() {
		t.Errorf("local.identity_arns %#v: want one per relay domain", ids)
	}
}
