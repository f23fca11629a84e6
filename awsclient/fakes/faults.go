package fakes

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is what an injected failure does to one request: hang for Delay
// (cut short when the client gives up), then answer Status with an S3-style
// XML error, or, when Status is 0, pass the request on (a slow dependency).
type Fault struct {
	Status  int
	Code    string
	Message string
	Delay   time.Duration
}

// S3 faults as S3 answers them.
var (
	FaultInternalError = Fault{Status: http.StatusInternalServerError, Code: "InternalError", Message: "We encountered an internal error. Please try again."}
	FaultSlowDown      = Fault{Status: http.StatusServiceUnavailable, Code: "SlowDown", Message: "Please reduce your request rate."}
	FaultAccessDenied  = Fault{Status: http.StatusForbidden, Code: "AccessDenied", Message: "Access Denied"}
)

// maxBufferedBody bounds the request body a hanging fault buffers.
const maxBufferedBody = 64 << 20

// Hang is a fault that holds the request for d and then serves it.
func Hang(d time.Duration) Fault { return Fault{Delay: d} }

// Faults injects failures into the next requests of a handler it wraps, and
// counts the requests it sees. The zero value is ready to use.
type Faults struct {
	mu       sync.Mutex
	queue    []Fault
	requests atomic.Int64
}

// Next makes the next n requests suffer f (after faults already queued).
func (f *Faults) Next(n int, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.queue = append(f.queue, fault)
	}
}

// Clear drops the faults still queued.
func (f *Faults) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = nil
}

// Requests is the number of requests seen so far, faulted or not.
func (f *Faults) Requests() int64 { return f.requests.Load() }

func (f *Faults) take() (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.queue) == 0 {
		return Fault{}, false
	}
	fault := f.queue[0]
	f.queue = f.queue[1:]
	return fault, true
}

// Wrap returns h with fault injection in front.
func (f *Faults) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		fault, ok := f.take()
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		if fault.Delay > 0 {
			// Read the request body first: only then does net/http notice
			// a client that hangs up, and cancel r.Context().
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody))
			if err != nil {
				return
			}
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
			t := time.NewTimer(fault.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if fault.Status == 0 {
			h.ServeHTTP(w, r)
			return
		}
		WriteS3Error(w, fault)
	})
}

// WriteS3Error answers f as S3 does: its REST-XML error with f's status,
// code and message (f.Delay is not applied here).
func WriteS3Error(w http.ResponseWriter, f Fault) {
	status, code, message := f.Status, f.Code, f.Message
	rid := requestID()
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-amz-request-id", rid)
	w.WriteHeader(status)
	w.Write([]byte(xml.Header))
	xml.NewEncoder(w).Encode(struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string
		Message   string
		RequestId string
	}{Code: code, Message: message, RequestId: rid})
}
