#!/usr/bin/env bash
# overload-rss.sh: is the relay's memory flat under a sustained overload?
#
# Runs the real binary as its own process against LocalStack (localstack/run.sh start), with SES
# pointed at a listener that accepts connections and never answers (SES hangs), a spool bounded
# at SPOOL_MAX messages, and publishes signed notifications through LocalStack's SNS for
# DURATION seconds at full speed. The spool fills, /sns answers 503, and the relay's RSS
# (/proc/PID/status VmRSS) is sampled every 10 s. Bounded in time; loopback only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); repo=$(cd "$here/.." && pwd)
DURATION=${DURATION:-120}; SPOOL_MAX=${SPOOL_MAX:-5000}
py=${LOCALSTACK_VENV:-$repo/.venv/localstack}/bin/python
bin=${MAILRELAY_BIN:-$repo/bin/mailrelay}
work=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
ls=http://127.0.0.1:4566

# SES that hangs: accepts and never answers.
"$py" - <<'PY' &
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 14599)); s.listen(1024)
conns = []
t0 = time.time()
while time.time() - t0 < 900:
    c, _ = s.accept(); conns.append(c)
PY

cat > "$work/aliases.yaml" <<YAML
domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
YAML
topic=$("$py" - <<'PY'
import boto3
kw = dict(endpoint_url="http://127.0.0.1:4566", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
s3 = boto3.client("s3", **kw); sns = boto3.client("sns", **kw)
try: s3.create_bucket(Bucket="mailrelay-overload")
except Exception: pass
s3.put_object(Bucket="mailrelay-overload", Key="m", Body=b"From: a@example.net\r\nTo: shop@relay.example.com\r\nSubject: x\r\n\r\n" + b"x" * 4000)
print(sns.create_topic(Name="mailrelay-overload", Attributes={"SignatureVersion": "2"})["TopicArn"])
PY
)
env AWS_ENDPOINT_URL=$ls AWS_ENDPOINT_URL_SES=http://127.0.0.1:14599 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
  RELAY_LISTEN=127.0.0.1:18480 RELAY_HEALTH_LISTEN=127.0.0.1:18481 RELAY_ADMIN_LISTEN=127.0.0.1:18482 \
  RELAY_SNS_TOPIC_ARNS="$topic" RELAY_SNS_CERT_URL_PREFIXES=$ls/_aws/sns/ RELAY_SPOOL_DIR="$work/spool" \
  RELAY_ALIASES_FILE="$work/aliases.yaml" RELAY_SPOOL_MAX_MESSAGES=$SPOOL_MAX RELAY_SES_TIMEOUT=5s RELAY_LOG_LEVEL=error \
  "$bin" serve &
relay=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18481/livez >/dev/null && break; sleep 0.2; done

"$py" - "$topic" "$DURATION" <<'PY' &
import boto3, json, sys, time, threading
topic, duration = sys.argv[1], float(sys.argv[2])
kw = dict(endpoint_url="http://127.0.0.1:4566", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
sns = boto3.client("sns", **kw)
sub = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint="http://127.0.0.1:18480/sns", ReturnSubscriptionArn=True)["SubscriptionArn"]
time.sleep(2)
note = json.dumps({"notificationType": "Received", "mail": {"messageId": "m", "source": "a@example.net", "destination": ["shop@relay.example.com"]},
  "receipt": {"recipients": ["shop@relay.example.com"], "action": {"type": "S3", "bucketName": "mailrelay-overload", "objectKey": "m"}}})
end = time.time() + duration
def pub():
    c = boto3.client("sns", **kw)
    while time.time() < end:
        c.publish(TopicArn=topic, Message=note, Subject="Amazon SES Email Receipt Notification")
ts = [threading.Thread(target=pub) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
sns.unsubscribe(SubscriptionArn=sub)
PY
load=$!

echo "| t (s) | relay RSS (MiB) | spool (messages) | /sns 200 | /sns 503 | goroutines |"
echo "|---|---|---|---|---|---|"
for t in $(seq 10 10 "$DURATION"); do
  sleep 10
  rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' /proc/$relay/status)
  m=$(curl -s http://127.0.0.1:18481/metrics)
  q=$(echo "$m" | awk '/^mailrelay_queue_messages / {print $2}')
  ok=$(echo "$m" | awk '/^mailrelay_inbound_requests_total\{code="200",type="Notification"\}/ {print $2}')
  busy=$(echo "$m" | awk '/^mailrelay_inbound_requests_total\{code="503",type="Notification"\}/ {print $2}')
  g=$(echo "$m" | awk '/^go_goroutines / {print $2}')
  echo "| $t | $rss | $q | ${ok:-0} | ${busy:-0} | $g |"
done
wait $load || true
kill -TERM $relay; wait $relay || true
