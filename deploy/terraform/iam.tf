# The relay's role, assumed by its pods through IRSA. Least privilege: read and delete mail
# under the prefix, list the prefix (reconcile), send from the relay identities, and drain the
# subscription's dead-letter queue (redrive).

data "aws_iam_policy_document" "relay_trust" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:${var.kubernetes_service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

locals {
  # arn:aws:iam::ACCOUNT:oidc-provider/ISSUER -> ISSUER
  oidc_issuer = element(split("oidc-provider/", var.oidc_provider_arn), 1)

  ses_send_actions = var.ses_api == "sesv2" ? ["ses:SendEmail", "ses:SendRawEmail"] : ["ses:SendRawEmail"]
}

data "aws_iam_policy_document" "relay" {
  statement {
    sid       = "ReadAndDeleteReceivedMail"
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.inbound.arn}/${var.object_key_prefix}*"]
  }
  statement {
    sid       = "ListReceivedMail"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.inbound.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.object_key_prefix}*"]
    }
  }
  statement {
    sid     = "SendFromRelayDomains"
    effect  = "Allow"
    actions = local.ses_send_actions
    resources = concat(
      [for d in var.relay_domains : "arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/${d}"],
      [aws_sesv2_configuration_set.relay.arn],
    )
  }
  # The account's sending quota (SES GetSendQuota, SESv2 GetAccount) for the sending pace.
  # Read-only, and these actions take no resource: IAM accepts only "*" for them. The one
  # statement on "*" the checks in deploy/terraform_test.go allow, for exactly these actions.
  statement {
    sid       = "ReadSendingQuota"
    effect    = "Allow"
    actions   = ["ses:GetSendQuota", "ses:GetAccount"]
    resources = ["*"]
  }
  statement {
    sid    = "DrainSNSDeadLetters"
    effect = "Allow"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
      "sqs:GetQueueUrl",
    ]
    resources = [aws_sqs_queue.sns_dlq.arn]
  }
}

resource "aws_iam_role" "relay" {
  name               = "${var.name}-relay"
  assume_role_policy = data.aws_iam_policy_document.relay_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "relay" {
  name   = "${var.name}-relay"
  role   = aws_iam_role.relay.id
  policy = data.aws_iam_policy_document.relay.json
}
