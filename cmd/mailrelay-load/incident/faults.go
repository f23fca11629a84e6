package incident

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
)

// Target is the dependency a fault phase hits.
type Target string

// Targets.
const (
	TargetS3  Target = "s3"
	TargetSES Target = "ses"
)

// Kind is what a fault does to each request that arrives during its phase.
type Kind string

// Fault kinds.
const (
	// KindLatency holds the request for Phase.Latency (or until the
	// client gives up), then passes it on: a slow dependency.
	KindLatency Kind = "latency"
	// KindHang never answers: the request is held until the client gives
	// up, and then its connection is closed without an answer.
	KindHang Kind = "hang"
	// KindReset hijacks the connection and closes it with a TCP RST
	// (SO_LINGER 0) before anything is answered.
	KindReset Kind = "reset"
	// KindStatus500 answers 500 in the service's error format (S3
	// InternalError, SES InternalFailure).
	KindStatus500 Kind = "500"
	// KindThrottle answers as the service throttles: S3 503 SlowDown,
	// SES 400 Throttling.
	KindThrottle Kind = "throttle"
)

// Phase is one fault window: requests to Target that arrive between Start
// and Start+Length after the load began suffer Kind. Requests are never
// changed after they were passed on, so no fault makes a dependency do
// something without the relay hearing of it.
type Phase struct {
	Target  Target
	Kind    Kind
	Start   time.Duration // offset from the start of the load
	Length  time.Duration
	Latency time.Duration // KindLatency only
}

// End is the offset at which the phase is over.
func (p Phase) End() time.Duration { return p.Start + p.Length }

// maxFaultBody bounds the request body a fault reads before it holds or
// answers a request (SES raw mails are base64 in the body).
const maxFaultBody = 64 << 20

// injector is an http.Handler that applies the phases of one target to the
// requests it sees and passes the others to next.
type injector struct {
	target Target
	phases []Phase // of this target, in the order given (first match wins)
	next   http.Handler

	start  atomic.Int64 // unix nanoseconds the load started; 0: not yet, no faults
	closed chan struct{}

	requests atomic.Int64
	hits     []atomic.Int64 // per phase: requests faulted
}

func newInjector(target Target, all []Phase, next http.Handler) *injector {
	in := &injector{target: target, next: next, closed: make(chan struct{})}
	for _, p := range all {
		if p.Target == target {
			in.phases = append(in.phases, p)
		}
	}
	in.hits = make([]atomic.Int64, len(in.phases))
	return in
}

// begin arms the phases, counted from t.
func (in *injector) begin(t time.Time) { in.start.Store(t.UnixNano()) }

// release ends every held request (hangs and latencies) at once.
func (in *injector) release() { close(in.closed) }

// active returns the index of the phase the current moment falls in, or -1.
func (in *injector) active(now time.Time) int {
	start := in.start.Load()
	if start == 0 {
		return -1
	}
	off := now.Sub(time.Unix(0, start))
	for i, p := range in.phases {
		if off >= p.Start && off < p.End() {
			return i
		}
	}
	return -1
}

func (in *injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.requests.Add(1)
	i := in.active(time.Now())
	if i < 0 {
		in.next.ServeHTTP(w, r)
		return
	}
	in.hits[i].Add(1)
	p := in.phases[i]
	switch p.Kind {
	case KindLatency:
		if !in.hold(r, p.Latency) {
			panic(http.ErrAbortHandler)
		}
		in.next.ServeHTTP(w, r)
	case KindHang:
		in.hold(r, 0)
		// Never answer: returning normally would send an empty 200, which
		// an S3 GetObject would take for an empty mail.
		panic(http.ErrAbortHandler)
	case KindReset:
		reset(w)
	case KindStatus500:
		drain(r)
		writeError(w, in.target, true)
	case KindThrottle:
		drain(r)
		writeError(w, in.target, false)
	default:
		in.next.ServeHTTP(w, r)
	}
}

// hold keeps r for d (forever when d is 0) or until its client gives up or
// the injector is released; it reports whether the full d passed. The body
// is read first (and put back): only then does net/http notice a client
// that hangs up and cancel r.Context().
func (in *injector) hold(r *http.Request, d time.Duration) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxFaultBody))
	if err != nil {
		return false
	}
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-r.Context().Done():
	case <-in.closed:
	}
	return false
}

// drain reads what is left of the request body, so that the client sees
// the answer and not a broken pipe.
func drain(r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxFaultBody))
}

// reset closes the request's connection with a TCP RST.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// writeError answers as the service does: a 500 (internal) or throttling
// (S3 SlowDown; SES v1 Throttling, a 400 with fault "Sender").
func writeError(w http.ResponseWriter, target Target, internal bool) {
	if target == TargetS3 {
		f := fakes.FaultSlowDown
		if internal {
			f = fakes.FaultInternalError
		}
		fakes.WriteS3Error(w, f)
		return
	}
	err := fakes.ErrThrottling
	if internal {
		err = fakes.ErrInternal
	}
	fakes.WriteSESError(w, false, err)
}

// faultServer serves an injector on 127.0.0.1.
type faultServer struct {
	*injector
	srv *http.Server
	url string
}

func startFaultServer(in *injector) (*faultServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault injector for %s: %w", in.target, err)
	}
	srv := &http.Server{
		Handler:           in,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	// Serve only fails when the listener does; requests then fail as
	// connection errors, which the report shows.
	go func() { _ = srv.Serve(ln) }()
	return &faultServer{injector: in, srv: srv, url: "http://" + ln.Addr().String()}, nil
}

// close releases held requests and stops the server.
func (f *faultServer) close() {
	f.release()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		_ = f.srv.Close()
	}
}
