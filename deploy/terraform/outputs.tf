output "sns_topic_arn" {
  description = "The inbound topic: the relay's RELAY_SNS_TOPIC_ARNS (Helm value config.RELAY_SNS_TOPIC_ARNS)."
  value       = aws_sns_topic.inbound.arn
}

output "irsa_role_arn" {
  description = "The relay's IAM role: Helm value serviceAccount.roleArn."
  value       = aws_iam_role.relay.arn
}

output "bucket_name" {
  description = "The bucket SES stores received mail in."
  value       = aws_s3_bucket.inbound.id
}

output "sns_dlq_url" {
  description = "URL of the subscription's dead-letter queue (drain it back into the relay after an outage)."
  value       = aws_sqs_queue.sns_dlq.id
}

output "sns_dlq_name" {
  description = "Name of the dead-letter queue, the queue_name label of the CloudWatch exporter's metric in the MailrelaySNSDeadLetterQueueNotEmpty alert."
  value       = aws_sqs_queue.sns_dlq.name
}

output "feedback_topic_arn" {
  description = "Topic of the configuration set's Bounce and Complaint events and the identities' notifications; the relay is subscribed and needs it in RELAY_SNS_TOPIC_ARNS (see relay_sns_topic_arns)."
  value       = aws_sns_topic.feedback.arn
}

output "relay_sns_topic_arns" {
  description = "RELAY_SNS_TOPIC_ARNS for the relay (Helm value config.RELAY_SNS_TOPIC_ARNS): the inbound topic, then the feedback topic."
  value       = join(",", [aws_sns_topic.inbound.arn, aws_sns_topic.feedback.arn])
}

output "configuration_set_name" {
  description = "SES configuration set of the relay identities: the relay's RELAY_SES_CONFIGURATION_SET (Helm value config.RELAY_SES_CONFIGURATION_SET), so every send names it with the alias tag."
  value       = aws_sesv2_configuration_set.relay.configuration_set_name
}

output "mx_record" {
  description = "MX record value for each relay domain: mail goes to SES inbound in this region."
  value       = "10 inbound-smtp.${local.region}.amazonaws.com"
}

output "dkim_tokens" {
  description = "Easy DKIM tokens per relay domain: publish CNAME <token>._domainkey.<domain> -> <token>.dkim.amazonses.com."
  value       = { for d, id in aws_sesv2_email_identity.relay : d => id.dkim_signing_attributes[0].tokens }
}

output "sns_kms_key_arn" {
  description = "KMS key of the SNS topics: the one created (create_sns_kms_key), kms_master_key_id, or null (not encrypted)."
  value       = local.sns_kms_key_id
}

output "sns_kms_key_policy_json" {
  description = "The key policy statement SES needs on a key given as kms_master_key_id (merge it into that key's policy)."
  value       = data.aws_iam_policy_document.sns_kms_ses.json
}

output "sqs_intake_queue_url" {
  description = "RELAY_SQS_QUEUE_URL for RELAY_INTAKE=sqs (null unless sqs_intake)."
  value       = var.sqs_intake ? aws_sqs_queue.intake[0].id : null
}

output "sqs_intake_dlq_url" {
  description = "The intake's dead-letter queue: what SQS moved there after sqs_max_receive_count receives (null unless sqs_intake)."
  value       = var.sqs_intake ? aws_sqs_queue.intake_dlq[0].id : null
}
