#!/usr/bin/env bash
# 10-mailrelay.sh: LocalStack "ready" hook that creates what mailrelay needs.
#
# LocalStack runs it once it is ready (host mode: localstack/run.sh links this directory to
# <FILESYSTEM_ROOT>/etc/localstack/init/ready.d; compose: mounted at /etc/localstack/init/ready.d).
# It is idempotent, so it can also be run by hand at any time, e.g. `localstack/run.sh init`
# once the relay listens, to have a pending subscription confirmed.
#
# It creates, in this order:
#   - S3 bucket $MAILRELAY_BUCKET (where SES would put inbound raw mail);
#   - SES (v1) identities $MAILRELAY_SES_IDENTITIES, verified at once by LocalStack. LocalStack
#     checks only the sender (Source, or From when Source is absent) of SendRawEmail: it must be
#     a verified address or an address on a verified domain (not a subdomain). Recipients are
#     not checked;
#   - SQS queue $MAILRELAY_DLQ, the subscription's redrive (dead-letter) queue. LocalStack never
#     retries an HTTP delivery: one answered with an error status or not answered at all goes to
#     this queue, as the exact signed JSON body SNS had POSTed, so a test can re-POST it;
#   - SNS topic $MAILRELAY_TOPIC with SignatureVersion=2 (SHA256 signatures);
#   - an HTTP subscription of $RELAY_SNS_ENDPOINT, with the DLQ as RedrivePolicy. LocalStack
#     POSTs the SubscriptionConfirmation once, at subscribe time, and does not resend it for an
#     existing subscription: if the endpoint's subscription is still pending, this script
#     unsubscribes and subscribes again, so a new confirmation is sent.
# Then it prints the topic ARN (MAILRELAY_TOPIC_ARN=...) and, if MAILRELAY_ENV_FILE is set,
# writes the relay's settings there as shell assignments.
#
# Environment (all optional):
#   AWS_ENDPOINT_URL         LocalStack's endpoint (default http://127.0.0.1:4566)
#   AWS_REGION               region (default: AWS_DEFAULT_REGION, else us-east-1)
#   AWS_ACCESS_KEY_ID        default "test" (LocalStack's account 000000000000); the relay must
#   AWS_SECRET_ACCESS_KEY    use the same key and region to see these resources (default "test")
#   MAILRELAY_BUCKET         S3 bucket (default mailrelay-inbound)
#   MAILRELAY_SES_IDENTITIES comma-separated SES identities to verify; an entry with "@" is an
#                            email address, others are domains (default relay.example.com)
#   MAILRELAY_TOPIC          SNS topic name (default mailrelay-inbound)
#   MAILRELAY_DLQ            SQS dead-letter queue name; empty: none (default mailrelay-inbound-dlq)
#   RELAY_SNS_ENDPOINT       URL to subscribe over HTTP; empty: no subscription
#                            (default http://127.0.0.1:8080/sns)
#   RELAY_SNS_WAIT_SECONDS   wait up to this long for the endpoint to accept TCP connections
#                            before subscribing, so the one confirmation is not lost (default 0)
#   LOCALSTACK_HOST          host:port LocalStack advertises in SigningCertURL and SubscribeURL;
#                            used only for the env file (default: the endpoint's host:port)
#   MAILRELAY_ENV_FILE       if set, write RELAY_SNS_TOPIC_ARNS, RELAY_SNS_CERT_URL_PREFIXES,
#                            AWS_* and MAILRELAY_* settings there (sourceable by sh)
#   PYTHON                   interpreter that has boto3 (default: the first of python3, python,
#                            LocalStack image's venv python that imports boto3)
set -euo pipefail

py=""
for c in "${PYTHON:-}" python3 python /opt/code/localstack/.venv/bin/python; do
	[ -n "$c" ] || continue
	if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import boto3' >/dev/null 2>&1; then
		py=$c
		break
	fi
done
if [ -z "$py" ]; then
	echo "10-mailrelay.sh: no python with boto3 found (set PYTHON)" >&2
	exit 1
fi

exec "$py" - <<'EOF'
import json
import os
import socket
import sys
import tempfile
import time
import urllib.parse

import boto3
import botocore.config
from botocore.exceptions import ClientError


def env(name, default):
    v = os.environ.get(name)
    return default if v is None else v.strip()


endpoint = env("AWS_ENDPOINT_URL", "") or "http://127.0.0.1:4566"
region = env("AWS_REGION", "") or env("AWS_DEFAULT_REGION", "") or "us-east-1"
key_id = env("AWS_ACCESS_KEY_ID", "") or "test"
secret = env("AWS_SECRET_ACCESS_KEY", "") or "test"
bucket = env("MAILRELAY_BUCKET", "mailrelay-inbound")
identities = [s.strip() for s in env("MAILRELAY_SES_IDENTITIES", "relay.example.com").split(",") if s.strip()]
topic_name = env("MAILRELAY_TOPIC", "mailrelay-inbound")
dlq_name = env("MAILRELAY_DLQ", "mailrelay-inbound-dlq")
sub_endpoint = env("RELAY_SNS_ENDPOINT", "http://127.0.0.1:8080/sns")
wait_seconds = float(env("RELAY_SNS_WAIT_SECONDS", "0") or "0")
env_file = env("MAILRELAY_ENV_FILE", "")

cfg = botocore.config.Config(
    retries={"max_attempts": 3, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
    s3={"addressing_style": "path"},
)


def client(service):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=cfg,
    )


def log(msg):
    print(f"10-mailrelay: {msg}", flush=True)


# S3 bucket.
s3 = client("s3")
try:
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    log(f"bucket {bucket} ready")
except ClientError as e:
    if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        raise
    log(f"bucket {bucket} exists")

# SES identities.
ses = client("ses")
for ident in identities:
    if "@" in ident:
        ses.verify_email_identity(EmailAddress=ident)
    else:
        ses.verify_domain_identity(Domain=ident)
if identities:
    attrs = ses.get_identity_verification_attributes(Identities=identities)["VerificationAttributes"]
    for ident in identities:
        status = attrs.get(ident, {}).get("VerificationStatus", "missing")
        log(f"SES identity {ident}: {status}")
        if status != "Success":
            sys.exit(f"10-mailrelay: SES identity {ident} is {status}, not verified")

# SQS dead-letter queue for failed SNS deliveries.
dlq_arn = dlq_url = ""
if dlq_name:
    sqs = client("sqs")
    dlq_url = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    log(f"dead-letter queue {dlq_arn}")

# SNS topic, SHA256 signatures.
sns = client("sns")
topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
sns.set_topic_attributes(TopicArn=topic_arn, AttributeName="SignatureVersion", AttributeValue="2")
log(f"topic {topic_arn} (SignatureVersion 2)")


def subscriptions(endpoint_url):
    out = []
    kw = {"TopicArn": topic_arn}
    for _ in range(1000):  # bounded pagination
        page = sns.list_subscriptions_by_topic(**kw)
        out += [s for s in page["Subscriptions"] if s["Protocol"] == "http" and s["Endpoint"] == endpoint_url]
        if not page.get("NextToken"):
            break
        kw["NextToken"] = page["NextToken"]
    return out


def wait_for_endpoint(url, seconds):
    u = urllib.parse.urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection((u.hostname, port), timeout=1):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


if sub_endpoint:
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn}) if dlq_arn else None
    state = None
    for sub in subscriptions(sub_endpoint):
        arn = sub["SubscriptionArn"]
        a = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
        if a.get("PendingConfirmation") == "true":
            sns.unsubscribe(SubscriptionArn=arn)
            log(f"removed pending subscription {arn} to have the confirmation sent again")
            continue
        if redrive and a.get("RedrivePolicy") != redrive:
            sns.set_subscription_attributes(SubscriptionArn=arn, AttributeName="RedrivePolicy", AttributeValue=redrive)
        state = f"{arn} (confirmed)"
    if state is None:
        if wait_seconds > 0 and not wait_for_endpoint(sub_endpoint, wait_seconds):
            log(f"WARNING: {sub_endpoint} not reachable after {wait_seconds:g}s; its confirmation will be lost"
                " (run this script again once it listens)")
        attrs = {"RedrivePolicy": redrive} if redrive else {}
        arn = sns.subscribe(TopicArn=topic_arn, Protocol="http", Endpoint=sub_endpoint,
                            Attributes=attrs, ReturnSubscriptionArn=True)["SubscriptionArn"]
        state = f"{arn} (pending confirmation: SubscriptionConfirmation POSTed to {sub_endpoint})"
    log(f"subscription {state}")

print(f"MAILRELAY_TOPIC_ARN={topic_arn}", flush=True)

if env_file:
    ls_host = env("LOCALSTACK_HOST", "") or urllib.parse.urlsplit(endpoint).netloc
    if ":" not in ls_host:
        ls_host += ":4566"
    # SigningCertURL is http://<LOCALSTACK_HOST>/_aws/sns/SimpleNotificationService-....pem;
    # SubscribeURL is http://<LOCALSTACK_HOST>/?Action=ConfirmSubscription&... (the relay allows a
    # SubscribeURL on the scheme and host of an allowed prefix).
    values = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "RELAY_SNS_TOPIC_ARNS": topic_arn,
        "RELAY_SNS_CERT_URL_PREFIXES": f"http://{ls_host}/_aws/sns/",
        "MAILRELAY_BUCKET": bucket,
        "MAILRELAY_TOPIC_ARN": topic_arn,
        "MAILRELAY_DLQ_URL": dlq_url,
        "MAILRELAY_SNS_ENDPOINT": sub_endpoint,
    }
    d = os.path.dirname(os.path.abspath(env_file))
    os.makedirs(d, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=d, delete=False) as f:
        for k, v in values.items():
            f.write(f"{k}='{v}'\n")
    os.replace(f.name, env_file)
    log(f"wrote {env_file}")
EOF
