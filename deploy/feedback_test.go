package deploy

import (
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// Every SES identity the relay sends from has email feedback forwarding
// off: with it on, SES mails bounces and complaints to the forwarded copy's
// Return-Path, an alias on a relay domain, and the relay would forward them
// back to the destination that bounced (a loop). Bounces and complaints
// reach the feedback topic through the configuration set instead, which
// SES requires before it lets forwarding be turned off.
func TestTerraformFeedbackForwardingOff(t *testing.T) {
	tf, ctx := loadTerraform(t)
	ids := tf.Find("resource", "aws_sesv2_email_identity")
	if len(ids) == 0 {
		t.Fatal("no aws_sesv2_email_identity")
	}
	fb := tf.Find("resource", "aws_sesv2_email_identity_feedback_attributes")
	if len(fb) == 0 {
		t.Fatal("no aws_sesv2_email_identity_feedback_attributes: SES forwards bounces to the alias by default")
	}
	covered := map[string]bool{}
	for _, b := range fb {
		if v := eval(t, ctx, b, "email_forwarding_enabled"); !v.IsKnown() || v.Type() != cty.Bool || v.True() {
			t.Errorf("%v: email_forwarding_enabled = %#v, want false", b.Labels, v)
		}
		a, ok := b.Body.Attributes["for_each"]
		if !ok {
			t.Errorf("%v: no for_each: one identity per relay domain", b.Labels)
			continue
		}
		for _, tr := range a.Expr.Variables() {
			if tr.RootName() == "aws_sesv2_email_identity" {
				covered[traverseName(tr, 1)] = true
			}
		}
		dep, ok := b.Body.Attributes["depends_on"]
		if !ok {
			t.Errorf("%v: no depends_on the configuration set's event destination", b.Labels)
			continue
		}
		found := false
		for _, tr := range dep.Expr.Variables() {
			if tr.RootName() == "aws_sesv2_configuration_set_event_destination" {
				found = true
			}
		}
		if !found {
			t.Errorf("%v: depends_on does not name an aws_sesv2_configuration_set_event_destination", b.Labels)
		}
	}
	for _, id := range ids {
		if !covered[id.Labels[1]] {
			t.Errorf("aws_sesv2_email_identity.%s has no feedback attributes with forwarding off", id.Labels[1])
		}
	}
	// The event destination that takes over reports bounces and complaints.
	for _, b := range tf.Find("resource", "aws_sesv2_configuration_set_event_destination") {
		for _, ed := range children(b, "event_destination") {
			v := eval(t, ctx, ed, "matching_event_types")
			var types []string
			for it := v.ElementIterator(); it.Next(); {
				_, e := it.Element()
				types = append(types, e.AsString())
			}
			s := strings.Join(types, ",")
			if !strings.Contains(s, "BOUNCE") || !strings.Contains(s, "COMPLAINT") {
				t.Errorf("%v: event types %q, want BOUNCE and COMPLAINT", b.Labels, s)
			}
		}
	}
	if err := tf.CheckReferences(); err != nil {
		t.Error(err)
	}
}
