"""Check the LocalStack behaviour mailrelay's e2e tests rely on, and capture test vectors.

Run it with the venv run.sh made, against a LocalStack that run.sh started:

    .venv/localstack/bin/python localstack/verify.py [--write-testdata] [--retry-wait 70]

It checks, and exits non-zero if any check fails:
  - S3 put/get with path-style addressing returns the bytes put;
  - SES SendRawEmail from a verified domain is listed by GET /_aws/ses with the raw bytes
    intact; an unverified sender is rejected;
  - SNS HTTP delivery: a SubscriptionConfirmation comes first; once its SubscribeURL is
    fetched, a Publish with a Subject arrives as a Notification; both carry SHA256
    (SignatureVersion 2) or SHA1 (1) signatures that verify, with AWS's string-to-sign, against
    the certificate at SigningCertURL; Unsubscribe sends an UnsubscribeConfirmation;
  - a delivery answered 503 is not retried (within --retry-wait seconds) and lands in the
    subscription's redrive queue with the exact body that was POSTed.
With --write-testdata it stores the captured bodies (byte for byte as POSTed), their HTTP
headers, the signing certificate and a /_aws/ses answer under localstack/testdata/.
"""

import argparse
import base64
import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import botocore.config
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:4566"
REGION = os.environ.get("AWS_REGION") or "us-east-1"
TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")

# AWS's string-to-sign: these keys, in this order, each as "Key\nValue\n", when present.
SIGNED_KEYS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
    "UnsubscribeConfirmation": ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"],
}

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def client(service):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


class Sink:
    """An HTTP endpoint on 127.0.0.1 recording every POST; paths under /fail answer 503."""

    def __init__(self):
        self.posts = []
        self.cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink.cond:
                    sink.posts.append({"t": time.time(), "path": self.path, "headers": dict(self.headers), "body": body})
                    sink.cond.notify_all()
                self.send_response(503 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, path, msg_type, timeout=30):
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for p in self.posts:
                    if p["path"] == path and p["headers"].get("x-amz-sns-message-type") == msg_type:
                        return p
                left = deadline - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def count(self, path):
        with self.cond:
            return len([p for p in self.posts if p["path"] == path])


def verify_signature(msg):
    """Verify an SNS message the way a subscriber must; returns an error string or None."""
    s = "".join(f"{k}\n{msg[k]}\n" for k in SIGNED_KEYS[msg["Type"]] if k in msg)
    pem = urllib.request.urlopen(msg["SigningCertURL"], timeout=10).read()
    cert = x509.load_pem_x509_certificate(pem)
    h = {"1": hashes.SHA1(), "2": hashes.SHA256()}[msg["SignatureVersion"]]
    try:
        cert.public_key().verify(base64.b64decode(msg["Signature"]), s.encode(), padding.PKCS1v15(), h)
    except Exception as e:  # InvalidSignature has no message
        return repr(e)
    return None


def check_s3():
    s3 = client("s3")
    s3.create_bucket(Bucket="mailrelay-verify")
    body = b"From: a@example.org\r\nSubject: x\r\n\r\n\x00\xff\xfe bytes\r\n"
    s3.put_object(Bucket="mailrelay-verify", Key="inbound/raw-1", Body=body)
    got = s3.get_object(Bucket="mailrelay-verify", Key="inbound/raw-1")["Body"].read()
    check(got == body, "S3 path-style put/get returns the exact bytes")
    raw = urllib.request.urlopen(f"{ENDPOINT}/mailrelay-verify/inbound/raw-1", timeout=10).read()
    check(raw == body, "S3 unsigned path-style GET (curl-like) returns the exact bytes")


def check_ses(write):
    ses = client("ses")
    ses.verify_domain_identity(Domain="verify.example.com")
    raw = (
        b'From: "Shop (via relay)" <shop@verify.example.com>\r\n'
        b"To: alice@example.org\r\n"
        b"Subject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\r\n"
        b"Message-ID: <verify-1@example.org>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"caf\xc3\xa9 \xe2\x82\xac trailing space \r\n\r\n.\r\n"
    )
    mid = ses.send_raw_email(
        Source="shop@verify.example.com", Destinations=["alice@example.org", "bob@example.net"], RawMessage={"Data": raw}
    )["MessageId"]
    answer = json.loads(urllib.request.urlopen(f"{ENDPOINT}/_aws/ses?id={mid}", timeout=10).read())
    msgs = answer["messages"]
    check(len(msgs) == 1 and msgs[0]["Id"] == mid, "GET /_aws/ses?id= lists the sent message")
    m = msgs[0]
    check(m.get("RawData", "").encode("utf-8") == raw, "RawData is the raw message, byte for byte (as UTF-8 text)")
    check(m.get("Source") == "shop@verify.example.com", "Source is the SendRawEmail Source")
    check("Destination" not in m, "raw sends carry no Destination (envelope recipients are not exposed)")
    try:
        ses.send_raw_email(Source="x@unverified.example", Destinations=["a@example.org"], RawMessage={"Data": raw})
        check(False, "an unverified sender is rejected")
    except ses.exceptions.MessageRejected:
        check(True, "an unverified sender is rejected (MessageRejected)")
    patched = "RawDataBase64" in m
    if patched:
        check(base64.b64decode(m["RawDataBase64"]) == raw, "RawDataBase64 (init/start.d patch) is the exact bytes")
    latin1 = raw.replace(b"charset=utf-8", b"charset=windows-1252").replace(b"caf\xc3\xa9", b"caf\xe9")
    try:
        mid = ses.send_raw_email(
            Source="shop@verify.example.com", Destinations=["a@example.org"], RawMessage={"Data": latin1}
        )["MessageId"]
        got = json.loads(urllib.request.urlopen(f"{ENDPOINT}/_aws/ses?id={mid}", timeout=10).read())["messages"][0]
        check(base64.b64decode(got.get("RawDataBase64", "")) == latin1,
              "8-bit windows-1252 raw message accepted, RawDataBase64 exact")
    except Exception as e:
        check(not patched, f"8-bit non-UTF-8 raw message: {e}")
        print("note LocalStack without init/start.d/05-ses-raw-bytes.py refuses raw mail that is not UTF-8")
    if write:
        with open(os.path.join(TESTDATA, "ses-sent.json"), "w") as f:
            json.dump(answer, f, indent=1)
            f.write("\n")


def check_sns(sink, write, retry_wait):
    sns = client("sns")
    sqs = client("sqs")
    samples = {}
    for version in ("2", "1"):
        topic = sns.create_topic(Name=f"mailrelay-verify-v{version}", Attributes={"SignatureVersion": version})["TopicArn"]
        path = f"/sns-v{version}"
        sub = sns.subscribe(
            TopicArn=topic, Protocol="http", Endpoint=f"http://127.0.0.1:{sink.port}{path}", ReturnSubscriptionArn=True
        )["SubscriptionArn"]
        conf = sink.wait(path, "SubscriptionConfirmation")
        check(conf is not None, f"v{version}: SubscriptionConfirmation POSTed on Subscribe")
        if conf is None:
            continue
        cmsg = json.loads(conf["body"])
        check(cmsg["SignatureVersion"] == version, f"v{version}: confirmation SignatureVersion {cmsg['SignatureVersion']}")
        err = verify_signature(cmsg)
        check(err is None, f"v{version}: confirmation signature verifies against SigningCertURL ({err or 'ok'})")
        urllib.request.urlopen(cmsg["SubscribeURL"], timeout=10).read()
        pending = sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]["PendingConfirmation"]
        check(pending == "false", "GET of SubscribeURL (unsigned) confirms the subscription")
        ses_message = json.dumps(ses_received_notification(topic), separators=(",", ":"))
        sns.publish(TopicArn=topic, Subject="Amazon SES Email Receipt Notification", Message=ses_message)
        note = sink.wait(path, "Notification")
        check(note is not None, f"v{version}: Notification POSTed")
        if note is None:
            continue
        nmsg = json.loads(note["body"])
        check(nmsg.get("Message") == ses_message and "Subject" in nmsg, f"v{version}: Message and Subject delivered intact")
        err = verify_signature(nmsg)
        check(err is None, f"v{version}: notification signature verifies (Subject signed) ({err or 'ok'})")
        samples[f"sns-v{version}-subscription-confirmation"] = conf
        samples[f"sns-v{version}-notification"] = note
        if version == "2":
            sns.publish(TopicArn=topic, Message="no subject here")
            deadline = time.time() + 30
            nosub = None
            while nosub is None and time.time() < deadline:
                with sink.cond:
                    for p in sink.posts:
                        if p["path"] == path and b"no subject here" in p["body"]:
                            nosub = p
                if nosub is None:
                    time.sleep(0.2)
            check(nosub is not None and verify_signature(json.loads(nosub["body"])) is None,
                  "v2: notification without Subject verifies")
            samples["sns-v2-notification-nosubject"] = nosub
            sns.unsubscribe(SubscriptionArn=sub)
            unsub = sink.wait(path, "UnsubscribeConfirmation")
            check(unsub is not None, "v2: Unsubscribe POSTs an UnsubscribeConfirmation")
            if unsub is not None:
                check(verify_signature(json.loads(unsub["body"])) is None, "v2: UnsubscribeConfirmation verifies")
                samples["sns-v2-unsubscribe-confirmation"] = unsub

    # 503: retried or not? Where does the message go?
    topic = sns.create_topic(Name="mailrelay-verify-fail", Attributes={"SignatureVersion": "2"})["TopicArn"]
    q = sqs.create_queue(QueueName="mailrelay-verify-dlq")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=f"http://127.0.0.1:{sink.port}/fail",
                  Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": qarn})})
    conf = sink.wait("/fail", "SubscriptionConfirmation")
    urllib.request.urlopen(json.loads(conf["body"])["SubscribeURL"], timeout=10).read()
    before = sink.count("/fail")
    sns.publish(TopicArn=topic, Subject="S", Message="answered 503")
    note = sink.wait("/fail", "Notification")
    check(note is not None, "503 test: Notification POSTed once")
    if retry_wait > 0:
        time.sleep(retry_wait)
        n = sink.count("/fail") - before
        check(n == 1, f"503 test: {n} POST(s) in {retry_wait}s: LocalStack does not retry")
    bodies = []
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        bodies += [m["Body"].encode() for m in got]
        if any(b"answered 503" in b for b in bodies):
            break
    check(note is not None and note["body"] in bodies, "503 test: the exact POSTed body lands in the redrive queue")

    if write:
        headers = {}
        for name, p in sorted(samples.items()):
            with open(os.path.join(TESTDATA, name + ".json"), "wb") as f:
                f.write(p["body"])
            headers[name] = {k: v for k, v in p["headers"].items() if k.lower() not in ("host", "content-length")}
        with open(os.path.join(TESTDATA, "sns-headers.json"), "w") as f:
            json.dump(headers, f, indent=1, sort_keys=True)
            f.write("\n")
        cert_url = json.loads(samples["sns-v2-notification"]["body"])["SigningCertURL"]
        with open(os.path.join(TESTDATA, "sns-signing-cert.pem"), "wb") as f:
            f.write(urllib.request.urlopen(cert_url, timeout=10).read())


def ses_received_notification(topic_arn):
    """A Received notification as SES publishes it for an S3 receipt action."""
    return {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-01-02T03:04:05.678Z",
            "source": "sender@example.org",
            "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
            "destination": ["shop@relay.example.com"],
            "headersTruncated": False,
            "headers": [
                {"name": "From", "value": "Sender <sender@example.org>"},
                {"name": "To", "value": "shop@relay.example.com"},
                {"name": "Subject", "value": "Hello"},
            ],
            "commonHeaders": {
                "from": ["Sender <sender@example.org>"],
                "to": ["shop@relay.example.com"],
                "messageId": "<hello-1@example.org>",
                "subject": "Hello",
            },
        },
        "receipt": {
            "timestamp": "2026-01-02T03:04:05.678Z",
            "processingTimeMillis": 321,
            "recipients": ["shop@relay.example.com"],
            "spamVerdict": {"status": "PASS"},
            "virusVerdict": {"status": "PASS"},
            "spfVerdict": {"status": "PASS"},
            "dkimVerdict": {"status": "PASS"},
            "dmarcVerdict": {"status": "PASS"},
            "action": {
                "type": "S3",
                "topicArn": topic_arn,
                "bucketName": "mailrelay-inbound",
                "objectKey": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
            },
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-testdata", action="store_true", help="store captured samples in localstack/testdata")
    ap.add_argument("--retry-wait", type=float, default=0, help="seconds to watch for retries of a 503 delivery")
    args = ap.parse_args()
    if args.write_testdata:
        os.makedirs(TESTDATA, exist_ok=True)
    sink = Sink()
    check_s3()
    check_ses(args.write_testdata)
    check_sns(sink, args.write_testdata, args.retry_wait)
    print(f"{len(failures)} failed" if failures else "all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
