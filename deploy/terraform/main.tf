# The AWS side of mailrelay: SES receives mail for the relay domains, stores it in S3 and
# notifies an SNS topic, which delivers to the relay over HTTPS; what SNS cannot deliver within
# an hour lands in an SQS dead-letter queue. The relay sends through SES, whose bounce and
# complaint events go to a feedback topic.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  bucket     = var.bucket_name != "" ? var.bucket_name : "${var.name}-inbound-${local.account_id}"

  rule_set_name = "${var.name}-rules"
  rule_name     = "${var.name}-to-relay"
  rule_arn      = "arn:${local.partition}:ses:${local.region}:${local.account_id}:receipt-rule-set/${local.rule_set_name}:receipt-rule/${local.rule_name}"

  # SNS retries HTTP/S deliveries for at most 3,600 s in total. This policy uses all of it,
  # with no backoff phase so the total is exact: 12 retries 5 s apart (1 minute of quick
  # retries: a draining or restarting pod), then 59 retries a minute apart.
  # 12 * 5 + 59 * 60 = 3600 s; then the notification goes to the dead-letter queue.
  delivery_policy = {
    healthyRetryPolicy = {
      minDelayTarget     = 5
      maxDelayTarget     = 60
      numNoDelayRetries  = 0
      numMinDelayRetries = 12
      numMaxDelayRetries = 59
      numRetries         = 71
      backoffFunction    = "linear"
    }
    requestPolicy = {
      headerContentType = "text/plain; charset=UTF-8"
    }
  }
}
