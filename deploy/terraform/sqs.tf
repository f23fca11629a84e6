# The optional SQS intake (RELAY_INTAKE=sqs): the inbound topic delivers to a queue the relay
# reads, so the relay needs no endpoint reachable from the internet. Raw message delivery stays
# off: the relay verifies the signed SNS envelope as it does on POST /sns. A message the relay
# could not finish within sqs_max_receive_count receives is moved to the intake's dead-letter
# queue by SQS (the redrive policy); move it back with SQS's dead-letter redrive.

resource "aws_sqs_queue" "intake_dlq" {
  count                     = var.sqs_intake ? 1 : 0
  name                      = "${var.name}-intake-dlq"
  message_retention_seconds = var.dlq_retention_seconds
  sqs_managed_sse_enabled   = true
  tags                      = var.tags
}

resource "aws_sqs_queue" "intake" {
  count = var.sqs_intake ? 1 : 0
  name  = "${var.name}-intake"
  # The relay sets its own visibility per receive (RELAY_SQS_VISIBILITY_TIMEOUT) and extends
  # it while a mail is worked on; this is the default for other readers.
  visibility_timeout_seconds = 60
  message_retention_seconds  = var.sqs_retention_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.intake_dlq[0].arn
    maxReceiveCount     = var.sqs_max_receive_count
  })
  tags = var.tags
}

data "aws_iam_policy_document" "intake_queue" {
  statement {
    sid       = "AllowInboundTopic"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = ["arn:${local.partition}:sqs:${local.region}:${local.account_id}:${var.name}-intake"]
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

resource "aws_sqs_queue_policy" "intake" {
  count     = var.sqs_intake ? 1 : 0
  queue_url = aws_sqs_queue.intake[0].id
  policy    = data.aws_iam_policy_document.intake_queue.json
}

resource "aws_sns_topic_subscription" "intake" {
  count                = var.sqs_intake ? 1 : 0
  topic_arn            = aws_sns_topic.inbound.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.intake[0].arn
  raw_message_delivery = false
  depends_on           = [aws_sqs_queue_policy.intake]
}

# SES feedback through the same queue (the relay tells feedback from mail by its content).
resource "aws_sns_topic_subscription" "intake_feedback" {
  count                = var.sqs_intake ? 1 : 0
  topic_arn            = aws_sns_topic.feedback.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.intake[0].arn
  raw_message_delivery = false
  depends_on           = [aws_sqs_queue_policy.intake]
}

# What the relay does with the queue, and nothing else (no SendMessage).
data "aws_iam_policy_document" "relay_intake" {
  statement {
    sid    = "ReadIntakeQueue"
    effect = "Allow"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = ["arn:${local.partition}:sqs:${local.region}:${local.account_id}:${var.name}-intake"]
  }
}

resource "aws_iam_role_policy" "relay_intake" {
  count  = var.sqs_intake ? 1 : 0
  name   = "${var.name}-relay-sqs-intake"
  role   = aws_iam_role.relay.id
  policy = data.aws_iam_policy_document.relay_intake.json
}
