variable "name" {
  description = "Prefix of every resource name (bucket, topic, queue, role, rule set)."
  type        = string
  default     = "mailrelay"
}

variable "relay_domains" {
  description = "Domains whose mail SES receives and the relay forwards (the alias file's domains). Each gets an SES identity for sending; their MX records must point at SES inbound (output mx_record)."
  type        = list(string)
}

variable "relay_endpoint_url" {
  description = "HTTPS URL SNS delivers to: the relay's POST /sns through the Ingress or load balancer, e.g. https://relay.example.com/sns. It needs a publicly trusted certificate."
  type        = string

  validation {
    condition     = startswith(var.relay_endpoint_url, "https://")
    error_message = "relay_endpoint_url must be an https:// URL."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket SES stores received mail in. Empty: <name>-inbound-<account id>."
  type        = string
  default     = ""
}

variable "object_key_prefix" {
  description = "Key prefix of received mail in the bucket; the relay's IAM role may read and delete only under it."
  type        = string
  default     = "inbound/"
}

variable "mail_expiry_days" {
  description = "Days after which the bucket expires mail objects. A backstop: the relay deletes each object once the mail is forwarded or dropped (batched; a crash leaves the last interval's objects to this rule). Keep it longer than the relay's RELAY_RETRY_MAX_AGE plus the time you need to reconcile or redrive."
  type        = number
  default     = 14

  validation {
    condition     = var.mail_expiry_days >= 2
    error_message = "mail_expiry_days must leave time to recover mail: at least 2."
  }
}

variable "activate_rule_set" {
  description = "Make the receipt rule set the active one of the region. SES has one active rule set per region: set false if another rule set is active and add the rule there yourself."
  type        = bool
  default     = true
}

variable "tls_policy" {
  description = "TLS policy of the receipt rule: Require rejects mail from servers that do not use TLS, Optional accepts it."
  type        = string
  default     = "Optional"

  validation {
    condition     = contains(["Require", "Optional"], var.tls_policy)
    error_message = "tls_policy must be Require or Optional."
  }
}

variable "dlq_retention_seconds" {
  description = "How long the SNS subscription's dead-letter queue keeps a notification (SQS allows at most 14 days)."
  type        = number
  default     = 1209600
}

variable "ses_api" {
  description = "How the relay sends (RELAY_SES_API): ses (SendRawEmail) or sesv2 (SendEmail with raw content). Decides which SES action the role allows."
  type        = string
  default     = "ses"

  validation {
    condition     = contains(["ses", "sesv2"], var.ses_api)
    error_message = "ses_api must be ses or sesv2."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA), e.g. arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE."
  type        = string
}

variable "kubernetes_namespace" {
  description = "Namespace the Helm release runs in (IRSA trust: system:serviceaccount:<namespace>:<service account>)."
  type        = string
  default     = "mailrelay"
}

variable "kubernetes_service_account" {
  description = "Service account of the relay's pods (the chart's full name, mailrelay for a release named mailrelay)."
  type        = string
  default     = "mailrelay"
}

variable "tags" {
  description = "Tags added to every resource that takes tags."
  type        = map(string)
  default     = {}
}

variable "kms_master_key_id" {
  description = "KMS key (ID, ARN or alias ARN) for server-side encryption of the inbound and feedback SNS topics; null: not encrypted, unless create_sns_kms_key. Its key policy must carry output sns_kms_key_policy_json (SES must use the key), so alias/aws/sns does not work."
  type        = string
  default     = null

  validation {
    condition     = var.kms_master_key_id == null ? true : !endswith(var.kms_master_key_id, "alias/aws/sns")
    error_message = "alias/aws/sns cannot be used: SES cannot publish to a topic encrypted with the AWS managed key. Give a customer managed key or set create_sns_kms_key."
  }
}

variable "create_sns_kms_key" {
  description = "Create a customer managed KMS key (yearly rotation, alias/<name>-sns) whose policy lets this account's SES use it for these topics, and encrypt both SNS topics with it. Exclusive with kms_master_key_id."
  type        = bool
  default     = false
}

variable "sqs_intake" {
  description = "Create the SQS intake: a queue subscribed to the inbound topic (raw delivery off), its dead-letter queue, and the relay's right to read it. Run the relay with RELAY_INTAKE=sqs and RELAY_SQS_QUEUE_URL set to the sqs_intake_queue_url output."
  type        = bool
  default     = false
}

variable "sqs_max_receive_count" {
  description = "Receives after which SQS moves an intake message to the intake's dead-letter queue. Keep it above RELAY_RETRY_MAX_AGE / RELAY_RETRY_MAX (288 with the defaults) so that the relay dead-letters a failing mail itself, with its reason, first."
  type        = number
  default     = 400
}

variable "sqs_retention_seconds" {
  description = "How long the intake queue keeps a message not yet finished (SQS allows 60 s to 14 days); keep it above RELAY_RETRY_MAX_AGE."
  type        = number
  default     = 345600
}
