# Optional server-side encryption of the SNS topics with a customer managed KMS key.
#
# kms_master_key_id = null (the default): the topics are not encrypted at rest by SNS (the
# mail itself is in S3 with SSE-S3; a notification carries the headers of the mail).
# create_sns_kms_key = true: this module creates the key (rotated yearly) with the policy below
# and both topics use it. kms_master_key_id = "<your key>": the topics use that key, and its
# policy must carry the statement of output sns_kms_key_policy_json (SES publishes to
# encrypted topics only if the key lets ses.amazonaws.com GenerateDataKey and Decrypt).
# The AWS managed key alias/aws/sns does not work here: its policy cannot let SES use it.
#
# S3 does not publish to these topics (SES stores the mail and then notifies the inbound
# topic itself), so the key policy grants SES and no other service.

locals {
  # Topic ARNs from their names: the key policy names them and the topics name the key.
  sns_topic_arns = [
    "arn:${local.partition}:sns:${local.region}:${local.account_id}:${var.name}-inbound",
    "arn:${local.partition}:sns:${local.region}:${local.account_id}:${var.name}-feedback",
  ]
  sns_kms_key_id = var.create_sns_kms_key ? aws_kms_key.sns[0].arn : var.kms_master_key_id
}

# What SES needs on the key of an encrypted topic, scoped to this account's SES and to these
# topics (the encryption context SNS sets is the topic ARN).
data "aws_iam_policy_document" "sns_kms_ses" {
  statement {
    sid       = "AllowSESToPublishToEncryptedTopics"
    effect    = "Allow"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["ses.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:sns:topicArn"
      values   = local.sns_topic_arns
    }
  }
}

# The policy of the key this module creates: the account administers it through IAM (no
# wildcard actions; without PutKeyPolicy the key could not be managed again), SES uses it.
data "aws_iam_policy_document" "sns_kms" {
  source_policy_documents = [data.aws_iam_policy_document.sns_kms_ses.json]
  statement {
    sid    = "AccountAdministersTheKey"
    effect = "Allow"
    actions = [
      "kms:DescribeKey", "kms:GetKeyPolicy", "kms:PutKeyPolicy", "kms:GetKeyRotationStatus",
      "kms:EnableKeyRotation", "kms:DisableKeyRotation", "kms:ListResourceTags", "kms:TagResource",
      "kms:UntagResource", "kms:UpdateKeyDescription", "kms:EnableKey", "kms:DisableKey",
      "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:CreateGrant", "kms:ListGrants",
      "kms:RevokeGrant", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "sns" {
  count                   = var.create_sns_kms_key ? 1 : 0
  description             = "${var.name}: server-side encryption of the inbound and feedback SNS topics"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.sns_kms.json
  tags                    = var.tags

  lifecycle {
    precondition {
      condition     = var.kms_master_key_id == null
      error_message = "Set either create_sns_kms_key or kms_master_key_id, not both."
    }
  }
}

resource "aws_kms_alias" "sns" {
  count         = var.create_sns_kms_key ? 1 : 0
  name          = "alias/${var.name}-sns"
  target_key_id = aws_kms_key.sns[0].key_id
}
