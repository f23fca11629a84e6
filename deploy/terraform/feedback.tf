# Feedback forwarding off. With it on (SES's default), SES mails every bounce and complaint of
# a forwarded copy to the copy's Return-Path, an alias address on a relay domain: SES receives
# that mail, the relay takes it for ordinary mail to the alias and forwards it to the very
# destination that bounced, which bounces again (a loop; the relay also drops such mail as
# empty_sender / delivery_report / loop). Bounces and complaints reach the relay as events of the
# configuration set instead (aws_sesv2_configuration_set_event_destination.feedback, ses.tf): SES
# lets forwarding be turned off only when another mechanism reports them, hence depends_on.

resource "aws_sesv2_email_identity_feedback_attributes" "relay" {
  for_each                 = aws_sesv2_email_identity.relay
  email_identity           = each.value.email_identity
  email_forwarding_enabled = false

  depends_on = [aws_sesv2_configuration_set_event_destination.feedback]
}
