# The topic SES notifies for each received mail, and the relay's HTTPS subscription to it.

resource "aws_sns_topic" "inbound" {
  name = "${var.name}-inbound"
  # SHA256 signatures; the relay verifies v1 and v2, v2 is the one to use.
  signature_version = 2
  # Server-side encryption with the key of kms.tf (null: none).
  kms_master_key_id = local.sns_kms_key_id
  tags              = var.tags
}

data "aws_iam_policy_document" "inbound_topic" {
  statement {
    sid       = "AllowSESReceiptRule"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.inbound.arn]
    principals {
      type        = "Service"
      identifiers = ["ses.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [local.rule_arn]
    }
  }
}

resource "aws_sns_topic_policy" "inbound" {
  arn    = aws_sns_topic.inbound.arn
  policy = data.aws_iam_policy_document.inbound_topic.json
}

# The relay confirms the subscription itself (GET of the SubscribeURL, which must be an
# sns.<region>.amazonaws.com URL), once it runs with this topic in RELAY_SNS_TOPIC_ARNS.
resource "aws_sns_topic_subscription" "relay" {
  topic_arn                       = aws_sns_topic.inbound.arn
  protocol                        = "https"
  endpoint                        = var.relay_endpoint_url
  endpoint_auto_confirms          = true
  confirmation_timeout_in_minutes = 5
  raw_message_delivery            = false
  delivery_policy                 = jsonencode(local.delivery_policy)
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.sns_dlq.arn
  })
}

# What SNS could not deliver in an hour (every pod down, or a 4xx answer), kept for
# dlq_retention_seconds. The mail itself stays in S3 until the lifecycle expiry.
resource "aws_sqs_queue" "sns_dlq" {
  name                      = "${var.name}-sns-dlq"
  message_retention_seconds = var.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

data "aws_iam_policy_document" "sns_dlq" {
  statement {
    sid       = "AllowSNSDeadLetters"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.sns_dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.inbound.arn, aws_sns_topic.feedback.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "sns_dlq" {
  queue_url = aws_sqs_queue.sns_dlq.id
  policy    = data.aws_iam_policy_document.sns_dlq.json
}

# Bounce and complaint events of the mail the relay sends (configuration set event
# destination, eventType records), and the identities' Bounce and Complaint notifications
# (the same feedback in the notificationType form). The relay reads both forms and is
# subscribed below: a bounce pauses the destination, a complaint counts against the alias;
# the same feedback twice changes nothing more (a pause is kept, a complaint counts once per
# feedbackId). Run the relay with this topic in RELAY_SNS_TOPIC_ARNS too (output
# relay_sns_topic_arns).
resource "aws_sns_topic" "feedback" {
  name              = "${var.name}-feedback"
  signature_version = 2
  kms_master_key_id = local.sns_kms_key_id
  tags              = var.tags
}

data "aws_iam_policy_document" "feedback_topic" {
  statement {
    sid       = "AllowSESEvents"
    effect    = "Allow"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.feedback.arn]
    principals {
      type        = "Service"
      identifiers = ["ses.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceAccount"
      values   = [local.account_id]
    }
    # The configuration set's events, and the identities' Bounce and Complaint notifications
    # (ses.tf: set so that SES lets email feedback forwarding be turned off).
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = concat([aws_sesv2_configuration_set.relay.arn], local.identity_arns)
    }
  }
}

resource "aws_sns_topic_policy" "feedback" {
  arn    = aws_sns_topic.feedback.arn
  policy = data.aws_iam_policy_document.feedback_topic.json
}

# The relay's subscription to the feedback topic: the same endpoint, delivery policy and
# dead-letter queue as the inbound one (feedback the relay cannot take for an hour waits
# there; drain it with redrive-sns-dlq).
resource "aws_sns_topic_subscription" "relay_feedback" {
  topic_arn                       = aws_sns_topic.feedback.arn
  protocol                        = "https"
  endpoint                        = var.relay_endpoint_url
  endpoint_auto_confirms          = true
  confirmation_timeout_in_minutes = 5
  raw_message_delivery            = false
  delivery_policy                 = jsonencode(local.delivery_policy)
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.sns_dlq.arn
  })
}
