# Receiving: a rule for the relay domains that stores each mail in S3 and notifies the topic.

resource "aws_ses_receipt_rule_set" "relay" {
  rule_set_name = local.rule_set_name
}

resource "aws_ses_active_receipt_rule_set" "relay" {
  count         = var.activate_rule_set ? 1 : 0
  rule_set_name = aws_ses_receipt_rule_set.relay.rule_set_name
}

resource "aws_ses_receipt_rule" "relay" {
  name          = local.rule_name
  rule_set_name = aws_ses_receipt_rule_set.relay.rule_set_name
  recipients    = var.relay_domains
  enabled       = true
  # Spam and virus verdicts: the relay drops mail that fails them.
  scan_enabled = true
  tls_policy   = var.tls_policy

  s3_action {
    position          = 1
    bucket_name       = aws_s3_bucket.inbound.id
    object_key_prefix = var.object_key_prefix
    topic_arn         = aws_sns_topic.inbound.arn
  }

  depends_on = [aws_s3_bucket_policy.inbound, aws_sns_topic_policy.inbound]
}

# Sending: the relay sends from alias addresses on the relay domains, so each domain is an SES
# identity (publish the DKIM records of output dkim_tokens), and its mail uses the
# configuration set whose bounce and complaint events go to the feedback topic.

resource "aws_sesv2_configuration_set" "relay" {
  configuration_set_name = "${var.name}-relay"
  reputation_options {
    reputation_metrics_enabled = true
  }
  tags = var.tags
}

resource "aws_sesv2_configuration_set_event_destination" "feedback" {
  configuration_set_name = aws_sesv2_configuration_set.relay.configuration_set_name
  event_destination_name = "bounce-complaint-to-sns"
  event_destination {
    enabled              = true
    matching_event_types = ["BOUNCE", "COMPLAINT"]
    sns_destination {
      topic_arn = aws_sns_topic.feedback.arn
    }
  }
  depends_on = [aws_sns_topic_policy.feedback]
}

resource "aws_sesv2_email_identity" "relay" {
  for_each               = toset(var.relay_domains)
  email_identity         = each.value
  configuration_set_name = aws_sesv2_configuration_set.relay.configuration_set_name
  tags                   = var.tags
}

locals {
  identity_arns = [for d in var.relay_domains : "arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/${d}"]
}

# Feedback goes to SNS only: each identity publishes its Bounce and Complaint notifications
# to the feedback topic, and SES's email feedback forwarding is turned off (bounce and
# complaint mails to the envelope sender, an address on a relay domain, which would come back
# in through the receipt rule and be relayed like any mail). SES lets forwarding be off only while the
# identity has SNS topics for both Bounce and Complaint.
resource "aws_ses_identity_notification_topic" "bounce" {
  for_each                 = aws_sesv2_email_identity.relay
  identity                 = each.value.email_identity
  notification_type        = "Bounce"
  topic_arn                = aws_sns_topic.feedback.arn
  include_original_headers = false
  depends_on               = [aws_sns_topic_policy.feedback]
}

resource "aws_ses_identity_notification_topic" "complaint" {
  for_each                 = aws_sesv2_email_identity.relay
  identity                 = each.value.email_identity
  notification_type        = "Complaint"
  topic_arn                = aws_sns_topic.feedback.arn
  include_original_headers = false
  depends_on               = [aws_sns_topic_policy.feedback]
}

resource "aws_sesv2_email_identity_feedback_attributes" "relay" {
  for_each                 = aws_sesv2_email_identity.relay
  email_identity           = each.value.email_identity
  email_forwarding_enabled = false
  depends_on               = [aws_ses_identity_notification_topic.bounce, aws_ses_identity_notification_topic.complaint]
}
