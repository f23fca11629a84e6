package mailproc

import (
	"bytes"
	"context"
	"encoding/base64"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

// benchQueue hands out the same entry n times, then reports the queue
// closed; outcomes are only counted.
type benchQueue struct {
	entry              spool.Entry
	n, given           int
	completed, retried atomic.Int64
}

func (q *benchQueue) Next(ctx context.Context) (spool.Entry, error) {
	if q.given >= q.n {
		return spool.Entry{}, spool.ErrClosed
	}
	q.given++
	return q.entry, nil
}
func (q *benchQueue) MarkSent(id, key, sesMessageID string) error { return nil }
func (q *benchQueue) Retry(id string, at time.Time, reason string) error {
	q.retried.Add(1)
	return nil
}
func (q *benchQueue) Release(id string)                  {}
func (q *benchQueue) Complete(id string) error           { q.completed.Add(1); return nil }
func (q *benchQueue) DeadLetter(id, reason string) error { q.retried.Add(1); return nil }

// benchObjects returns the same mail for every key, as S3 hands a fresh
// buffer per Get (the one copy of the body the path makes is the rewrite).
type benchObjects struct{ raw []byte }

func (o benchObjects) Get(ctx context.Context, bucket, key string) ([]byte, error) { return o.raw, nil }
func (o benchObjects) Delete(ctx context.Context, bucket, key string) error        { return nil }

// benchSender counts the bytes it is handed.
type benchSender struct{ bytes atomic.Int64 }

func (s *benchSender) SendRaw(ctx context.Context, from string, destinations []string, raw []byte) (string, error) {
	s.bytes.Add(int64(len(raw)))
	return "0100018e0c8e7d6a-5b5f5a1e-4c1d-4a8e-9c5e-6f1b2a3c4d5e-000000", nil
}

// benchMail is mail.eml padded with a base64 attachment to about size bytes.
func benchMail(size int) []byte {
	head := mailtest.ReceivedMail()
	i := bytes.Index(head, []byte("Content-Type:"))
	var b bytes.Buffer
	b.Write(head[:i])
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\n")
	b.WriteString("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	bin := make([]byte, max(0, (size-b.Len())*3/4))
	for i := range bin {
		bin[i] = byte(i*7 + i>>8)
	}
	enc := base64.StdEncoding.EncodeToString(bin)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b--\r\n")
	return b.Bytes()
}

// BenchmarkWorkerPath measures the pool's whole path for one mail, fed from
// memory with in-memory stand-ins for S3 and SES: parse the notification,
// verdicts, route, fetch, loop checks, rewrite, send, mark sent, clean up,
// complete. Run with GOMAXPROCS=1 (one core, as in docs/benchmarks.md).
// Reported: mails/s (wall clock), cpu-mails/s (per second of process CPU
// time), MB/s and allocations per mail.
func BenchmarkWorkerPath(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"5KB", 5 << 10}, {"100KB", 100 << 10}, {"5MB", 5 << 20}} {
		b.Run("size="+size.name, func(b *testing.B) {
			table, err := aliases.Parse([]byte(aliasYAML))
			if err != nil {
				b.Fatal(err)
			}
			raw := benchMail(size.n)
			payload := s3Notification(b, nil, "sales@relay.example.com")
			q := &benchQueue{entry: spool.Entry{ID: "bench", Kind: "Received", Payload: payload, EnqueuedAt: time.Now()}, n: b.N}
			sender := &benchSender{}
			p, err := New(Config{
				Workers:       1,
				Queue:         q,
				Objects:       benchObjects{raw: raw},
				Sender:        sender,
				Aliases:       table,
				Policy:        Policy{DeleteObjects: true, MaxMessageBytes: 10 << 20},
				InFlightBytes: 64 << 20,
				Metrics:       telemetry.NewMetrics(),
			})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			cpu0, ok := processCPU()
			b.ResetTimer()
			p.Start(context.Background())
			p.Wait()
			b.StopTimer()
			if got := q.completed.Load(); got != int64(b.N) || q.retried.Load() != 0 {
				b.Fatalf("%d of %d completed, %d retried or dead-lettered", got, b.N, q.retried.Load())
			}
			if sender.bytes.Load() < int64(b.N)*int64(len(raw)-1024) { // headers are rewritten, the body goes as it is
				b.Fatalf("sent %d bytes for %d mails of %d", sender.bytes.Load(), b.N, len(raw))
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "mails/s")
			if cpu1, ok1 := processCPU(); ok && ok1 && cpu1 > cpu0 {
				b.ReportMetric(float64(b.N)/(cpu1-cpu0).Seconds(), "cpu-mails/s")
			}
		})
	}
}
