package awsclient

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	sestypes "github.com/aws/aws-sdk-go-v2/service/ses/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sesv2types "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSDKPerMail measures the client side of the three calls the relay
// makes per mail (S3 GetObject of a 5 KB mail, SES SendRawEmail, S3
// DeleteObject) against minimal loopback stand-ins that answer with canned
// responses, so that the profile shows the SDK's per-call cost (endpoint
// resolution, signing, middlewares), the breaker and the timer.
func BenchmarkSDKPerMail(b *testing.B) {
	mail := bytes.Repeat([]byte("x"), 5<<10)
	s3srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Length", strconv.Itoa(len(mail)))
			w.Write(mail)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}))
	defer s3srv.Close()
	sesResp := []byte(`<SendRawEmailResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><SendRawEmailResult><MessageId>0100-abc</MessageId></SendRawEmailResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SendRawEmailResponse>`)
	sesSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml")
		w.Write(sesResp)
	}))
	defer sesSrv.Close()

	c, err := New(context.Background(), testOptions(s3srv.URL, sesSrv.URL))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dest := []string{"someone@example.org"}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		data, err := c.S3.Get(ctx, "inbound", "mail/abc")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.SES.SendRaw(ctx, "alias@relay.example.com", dest, data); err != nil {
			b.Fatal(err)
		}
		if err := c.S3.Delete(ctx, "inbound", "mail/abc"); err != nil {
			b.Fatal(err)
		}
	}
	// The whole process: client and stand-ins together.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/mail")
}

// cannedClient answers every request in process with a fixed response,
// reading the request body first; it leaves only the SDK's per-call cost.
type cannedClient struct {
	status int
	header http.Header
	body   []byte
}

func (c cannedClient) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	return &http.Response{StatusCode: c.status, Header: c.header.Clone(), ContentLength: int64(len(c.body)),
		Body: io.NopCloser(bytes.NewReader(c.body)), Request: r}, nil
}

// BenchmarkSDKCall measures the SDK's client-side cost of each call the
// relay makes per mail (5 KB mail), with responses made in process (no
// network, no stand-in): the SDK as the relay configures it, with and
// without this package's shortcuts (the S3 endpoint cache, the SES form
// written once).
func BenchmarkSDKCall(b *testing.B) {
	ctx := context.Background()
	mail := bytes.Repeat([]byte("x"), 5<<10)
	cfg, err := loadConfig(ctx, testOptions("", "").withDefaults())
	if err != nil {
		b.Fatal(err)
	}
	s3c := func(cached bool, cc cannedClient) *s3.Client {
		return s3.NewFromConfig(cfg, func(o *s3.Options) {
			o.HTTPClient = cc
			o.Retryer = newRetryer(2)
			o.BaseEndpoint = aws.String("http://127.0.0.1:1")
			o.UsePathStyle = true
			if cached {
				o.EndpointResolverV2 = newS3EndpointCache(o.EndpointResolverV2)
			}
		})
	}
	sesc := func(bool) *ses.Client {
		resp := []byte(`<SendRawEmailResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><SendRawEmailResult><MessageId>0100-abc</MessageId></SendRawEmailResult></SendRawEmailResponse>`)
		return ses.NewFromConfig(cfg, func(o *ses.Options) {
			o.HTTPClient = cannedClient{status: 200, header: http.Header{"Content-Type": {"text/xml"}}, body: resp}
			o.Retryer = newSESRetryer(2)
			o.BaseEndpoint = aws.String("http://127.0.0.1:1")
		})
	}
	v2c := sesv2.NewFromConfig(cfg, func(o *sesv2.Options) {
		o.HTTPClient = cannedClient{status: 200, header: http.Header{"Content-Type": {"application/json"}}, body: []byte(`{"MessageId":"0100-abc"}`)}
		o.Retryer = newSESRetryer(2)
		o.BaseEndpoint = aws.String("http://127.0.0.1:1")
	})
	v2in := &sesv2.SendEmailInput{FromEmailAddress: aws.String("alias@relay.example.com"),
		Destination: &sesv2types.Destination{ToAddresses: []string{"someone@example.org"}},
		Content:     &sesv2types.EmailContent{Raw: &sesv2types.RawMessage{Data: mail}}}
	get := cannedClient{status: 200, header: http.Header{"Content-Length": {strconv.Itoa(len(mail))}}, body: mail}
	del := cannedClient{status: 204, header: http.Header{}}
	// DeleteObjects of 200 keys (a 200 ms batch at 1,000 mails/s); its
	// cpu-us/op divided by 200 is the batched delete's cost per mail.
	dels := cannedClient{status: 200, header: http.Header{"Content-Type": {"application/xml"}},
		body: []byte(`<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></DeleteResult>`)}
	batch := make([]s3types.ObjectIdentifier, 200)
	for i := range batch {
		batch[i].Key = aws.String("mail/" + strconv.Itoa(i) + "abcdefghijklmnopqrstuvwxyz0123456789")
	}
	for _, v := range []struct {
		name string
		fast bool
	}{{"sdk", false}, {"relay", true}} {
		getc, delc, delsc, sc := s3c(v.fast, get), s3c(v.fast, del), s3c(v.fast, dels), sesc(v.fast)
		in := &ses.SendRawEmailInput{Source: aws.String("alias@relay.example.com"), Destinations: []string{"someone@example.org"},
			RawMessage: &sestypes.RawMessage{Data: mail}}
		calls := []struct {
			name string
			do   func() error
		}{
			{"GetObject", func() error {
				out, err := getc.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("inbound"), Key: aws.String("mail/abc")})
				if err == nil {
					_, err = io.Copy(io.Discard, out.Body)
					out.Body.Close()
				}
				return err
			}},
			{"SendRawEmail", func() error { _, err := sc.SendRawEmail(ctx, in); return err }},
			// --ses-api sesv2: the same mail as JSON (base64, no form escaping).
			{"SESv2SendEmail", func() error { _, err := v2c.SendEmail(ctx, v2in); return err }},
			{"DeleteObject", func() error {
				_, err := delc.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("inbound"), Key: aws.String("mail/abc")})
				return err
			}},
			{"DeleteObjects200", func() error {
				_, err := delsc.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String("inbound"),
					Delete: &s3types.Delete{Objects: batch, Quiet: aws.Bool(true)}})
				return err
			}},
		}
		for _, c := range calls {
			b.Run(v.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := cpuTime(b)
				for b.Loop() {
					if err := c.do(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-us/op")
			})
		}
	}
}
