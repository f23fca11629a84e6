package awsclient

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/mailrelay/mailrelay/telemetry"
)

// callTimer is a smithy middleware observing
// mailrelay_external_call_duration_seconds{service, operation, outcome}.
//
// It sits first in the Initialize step, outside the retry middleware (which
// lives in Finalize), so one observation is one operation as the caller
// experiences it: all attempts and the backoff between them. That is the
// number that matters for how long a worker is held; the attempt count is
// bounded separately (at most 2).
//
// For GetObject the SDK returns once the headers are in and the body is
// streamed afterwards; the timer then wraps the body and observes when it
// is read to the end, fails, or is closed, so slow downloads are measured.
type callTimer struct {
	service string
	metrics *telemetry.Metrics
}

// ID implements middleware.InitializeMiddleware.
func (*callTimer) ID() string { return "mailrelay.CallTimer" }

// HandleInitialize implements middleware.InitializeMiddleware.
func (t *callTimer) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	start := time.Now()
	op := middleware.GetOperationName(ctx)
	out, md, err := next.HandleInitialize(ctx, in)
	if err == nil {
		if g, ok := out.Result.(*s3.GetObjectOutput); ok && g.Body != nil {
			g.Body = &timedBody{ReadCloser: g.Body, done: func(err error) { t.observe(op, start, err) }}
			return out, md, err
		}
	}
	t.observe(op, start, err)
	return out, md, err
}

func (t *callTimer) observe(op string, start time.Time, err error) {
	t.observeOutcome(op, outcome(err), time.Since(start))
}

func (t *callTimer) observeOutcome(op, outcome string, d time.Duration) {
	t.metrics.ExternalCallDuration.WithLabelValues(t.service, op, outcome).Observe(d.Seconds())
}

// outcome maps a call's error to the outcome label.
func outcome(err error) string {
	switch {
	case err == nil:
		return telemetry.OutcomeOK
	case isTimeout(err):
		return telemetry.OutcomeTimeout
	}
	return telemetry.OutcomeError
}

// isTimeout reports a deadline or a network timeout (dial, TLS handshake,
// response headers, the SDK's read timeout) anywhere in err's chain.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// timedBody reports once: at EOF, at the first read error, or at Close.
type timedBody struct {
	io.ReadCloser
	once sync.Once
	done func(error)
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.once.Do(func() { b.done(nil) })
	case err != nil:
		b.once.Do(func() { b.done(err) })
	}
	return n, err
}

func (b *timedBody) Close() error {
	// Closed before EOF: the caller chose to stop reading (too large, or
	// its own error); the dependency answered, so this is not its failure.
	b.once.Do(func() { b.done(nil) })
	return b.ReadCloser.Close()
}
