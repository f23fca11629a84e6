"""Deliver a mail to the relay the way SES receiving would, through LocalStack.

    .venv/localstack/bin/python localstack/send.py FILE.eml [RECIPIENT ...]

Puts FILE.eml (bytes untouched) into the inbound bucket under a new object key, then publishes
an SES "Received" notification for an S3 receipt action to the topic, with the Subject SES uses.
Recipients default to the To and Cc addresses of the mail. Prints the object key and the SNS
MessageId. Works against run.sh's LocalStack and the compose one (both on 127.0.0.1:4566).

Environment: AWS_ENDPOINT_URL (default http://127.0.0.1:4566), AWS_REGION (us-east-1),
MAILRELAY_BUCKET (mailrelay-inbound), MAILRELAY_TOPIC_ARN
(arn:aws:sns:<region>:000000000000:mailrelay-inbound).
"""

import datetime
import email.parser
import email.policy
import email.utils
import json
import os
import sys
import uuid

import boto3
import botocore.config


def received_notification(raw, recipients, topic_arn, bucket, key, verdict="PASS"):
    """The SES Received notification for raw stored at s3://bucket/key (S3 action)."""
    hdrs = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    source = email.utils.parseaddr(str(hdrs.get("Return-Path") or hdrs.get("From") or ""))[1]
    common = {k: v for k, v in {
        "from": [str(v) for v in hdrs.get_all("From", [])],
        "to": [str(v) for v in hdrs.get_all("To", [])],
        "messageId": str(hdrs.get("Message-ID", "")),
        "subject": str(hdrs.get("Subject", "")),
    }.items() if v}
    return {
        "notificationType": "Received",
        "mail": {
            "timestamp": now,
            "source": source,
            "messageId": key,
            "destination": recipients,
            "headersTruncated": False,
            "headers": [{"name": k, "value": str(v)} for k, v in hdrs.items()],
            "commonHeaders": common,
        },
        "receipt": {
            "timestamp": now,
            "processingTimeMillis": 1,
            "recipients": recipients,
            "spamVerdict": {"status": verdict},
            "virusVerdict": {"status": verdict},
            "spfVerdict": {"status": verdict},
            "dkimVerdict": {"status": verdict},
            "dmarcVerdict": {"status": verdict},
            "action": {"type": "S3", "topicArn": topic_arn, "bucketName": bucket, "objectKey": key},
        },
    }


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    region = os.environ.get("AWS_REGION") or "us-east-1"
    bucket = os.environ.get("MAILRELAY_BUCKET") or "mailrelay-inbound"
    topic = os.environ.get("MAILRELAY_TOPIC_ARN") or f"arn:aws:sns:{region}:000000000000:mailrelay-inbound"
    recipients = sys.argv[2:]
    if not recipients:
        hdrs = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
        fields = [str(v) for v in hdrs.get_all("To", []) + hdrs.get_all("Cc", [])]
        recipients = [a for _, a in email.utils.getaddresses(fields) if a]
    kw = dict(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566",
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "test",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    key = uuid.uuid4().hex
    boto3.client("s3", **kw).put_object(Bucket=bucket, Key=key, Body=raw)
    note = received_notification(raw, recipients, topic, bucket, key)
    mid = boto3.client("sns", **kw).publish(
        TopicArn=topic, Subject="Amazon SES Email Receipt Notification", Message=json.dumps(note)
    )["MessageId"]
    print(f"s3://{bucket}/{key} published as SNS MessageId {mid} to {', '.join(recipients)}")


if __name__ == "__main__":
    main()
