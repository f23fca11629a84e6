// Package fakes holds in-process stand-ins for the relay's AWS dependencies,
// used by tests across the repository and by the `mailrelay dev` playground:
// an SES that speaks the v1 query API (SendRawEmail) and the v2 REST API
// (SendEmail with raw content) and records what it was given, and an S3
// (gofakes3 with its in-memory backend). Both listen on 127.0.0.1 and are
// reached by the real clients through endpoint overrides (BaseEndpoint,
// AWS_ENDPOINT_URL_*). A Faults wrapper injects 5xx, throttling and hangs.
package fakes

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Sent is one mail the fake SES accepted.
type Sent struct {
	ID           string    // the MessageId answered
	Source       string    // envelope sender (v1 Source, v2 FromEmailAddress); may be empty
	Destinations []string  // envelope recipients
	Raw          []byte    // the raw message, exactly as received
	At           time.Time // when it was accepted
	API          string    // "ses" (SendRawEmail) or "sesv2" (SendEmail)
	// ConfigurationSet is the configuration set named (v1
	// ConfigurationSetName, v2 ConfigurationSetName); "" for none.
	ConfigurationSet string
	// Tags are the message tags (v1 Tags, v2 EmailTags) by name; nil for
	// none. Names and values are checked as SES does ([A-Za-z0-9_-],
	// 1 to 256 characters; a bad one is answered InvalidParameterValue).
	Tags map[string]string
}

// SESError is an error the fake SES answers, in the v1 code set. On the
// v2 API it is translated to the v2 equivalent (Throttling becomes
// TooManyRequestsException with status 429, InvalidParameterValue becomes
// BadRequestException, InternalFailure becomes
// InternalServiceErrorException); other codes are sent as they are.
type SESError struct {
	Status  int    // HTTP status of the v1 answer
	Code    string // e.g. "Throttling", "MessageRejected"
	Message string
}

func (e *SESError) Error() string {
	return fmt.Sprintf("ses %d %s: %s", e.Status, e.Code, e.Message)
}

// Errors as real SES sends them: SES answers Throttling (sending rate or
// daily quota) with 400 and fault "Sender", like a client error.
var (
	ErrThrottling          = &SESError{Status: http.StatusBadRequest, Code: "Throttling", Message: "Maximum sending rate exceeded."}
	ErrMessageRejected     = &SESError{Status: http.StatusBadRequest, Code: "MessageRejected", Message: "Email address is not verified."}
	ErrInvalidParameter    = &SESError{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: "Invalid parameter value."}
	ErrMailFromNotVerified = &SESError{Status: http.StatusBadRequest, Code: "MailFromDomainNotVerifiedException", Message: "MAIL FROM domain is not verified."}
	ErrAccessDenied        = &SESError{Status: http.StatusForbidden, Code: "AccessDenied", Message: "User is not authorized to perform ses:SendRawEmail."}
	ErrInternal            = &SESError{Status: http.StatusInternalServerError, Code: "InternalFailure", Message: "The request processing has failed because of an unknown error."}
)

// v2Errors maps v1 codes to the v2 API's status and code.
var v2Errors = map[string]struct {
	status int
	code   string
}{
	"Throttling":            {http.StatusTooManyRequests, "TooManyRequestsException"},
	"InvalidParameterValue": {http.StatusBadRequest, "BadRequestException"},
	"InternalFailure":       {http.StatusInternalServerError, "InternalServiceErrorException"},
	"AccessDenied":          {http.StatusForbidden, "AccessDeniedException"},
}

// maxSESBody caps a request body: SES v2 accepts raw mails up to 40 MB,
// base64 makes that about 54 MB.
const maxSESBody = 64 << 20

// SESOptions configures NewSES.
type SESOptions struct {
	// OnSend, when set, is called for every well-formed send before it is
	// recorded; a non-nil error fails the send: an *SESError is answered
	// as it is, any other error as InternalFailure (500).
	OnSend func(Sent) error
	// Latency delays every answer (cut short when the client gives up).
	Latency time.Duration
	// EMLDir, when set, receives each accepted mail as <ID>.eml.
	EMLDir string
	// Now returns the time recorded in Sent.At (default time.Now).
	Now func() time.Time
	// Quota limits the sends (see Quota; SetQuota changes it).
	Quota Quota
}

// SES is a fake Amazon SES. It is an http.Handler; Start serves it.
type SES struct {
	opts SESOptions

	mu      sync.Mutex
	sent    []Sent
	fails   []error
	seq     uint64
	changed chan struct{} // closed and replaced whenever sent grows
	srv     *httptest.Server
	quota   quotaState
}

// NewSES returns a fake SES handler.
func NewSES(opts SESOptions) *SES {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &SES{opts: opts, changed: make(chan struct{})}
	s.SetQuota(opts.Quota)
	return s
}

// Start serves s on addr ("" for 127.0.0.1 on a free port).
func (s *SES) Start(addr string) error {
	srv, err := startServer(addr, s)
	if err != nil {
		return fmt.Errorf("fake ses: %w", err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// URL is the base URL of the started server ("http://127.0.0.1:port").
func (s *SES) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return ""
	}
	return s.srv.URL
}

// Close stops the server started by Start, waiting for requests in flight.
func (s *SES) Close() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Fail makes the next len(errs) well-formed sends fail, in order, with errs
// (see SESOptions.OnSend for how errors are answered).
func (s *SES) Fail(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = append(s.fails, errs...)
}

// ClearFailures drops the errors queued by Fail that were not used yet.
func (s *SES) ClearFailures() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fails = nil
}

// Sent returns a copy of the mails accepted so far, in order.
func (s *SES) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Sent, len(s.sent))
	copy(out, s.sent)
	return out
}

// WaitSent waits until at least n mails were accepted or ctx ends.
func (s *SES) WaitSent(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, ch := len(s.sent), s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fake ses: %d of %d mails sent: %w", have, n, ctx.Err())
		}
	}
}

// ServeHTTP answers SES v1 (POST, form Action=SendRawEmail or
// GetSendQuota) and SES v2 (POST /v2/email/outbound-emails, GET
// /v2/email/account) requests.
func (s *SES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/v2/email/account" {
		s.serveQuota(w, true)
		return
	}
	v2 := r.URL.Path == "/v2/email/outbound-emails"
	if !v2 && r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxSESBody)
		if err := r.ParseForm(); err != nil {
			WriteSESError(w, false, &SESError{Status: http.StatusBadRequest, Code: "MalformedQueryString", Message: err.Error()})
			return
		}
		if r.PostForm.Get("Action") == "GetSendQuota" {
			s.serveQuota(w, false)
			return
		}
	}
	if r.Method != http.MethodPost {
		WriteSESError(w, v2, &SESError{Status: http.StatusMethodNotAllowed, Code: "InvalidAction", Message: "only POST is supported"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSESBody)
	var m Sent
	var err error
	if v2 {
		m, err = parseSendEmailV2(r)
	} else {
		m, err = parseSendRawEmail(r)
	}
	// The latency starts after the body was read: only then does net/http
	// notice a client that hangs up, and cancel r.Context().
	if d := s.opts.Latency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if err != nil {
		WriteSESError(w, v2, err)
		return
	}
	id, err := s.accept(m)
	if err != nil {
		WriteSESError(w, v2, err)
		return
	}
	if v2 {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-RequestId", requestID())
		json.NewEncoder(w).Encode(struct{ MessageId string }{id})
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<SendRawEmailResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">
  <SendRawEmailResult>
    <MessageId>%s</MessageId>
  </SendRawEmailResult>
  <ResponseMetadata>
    <RequestId>%s</RequestId>
  </ResponseMetadata>
</SendRawEmailResponse>
`, id, requestID())
}

// accept runs the failure hooks, then records m and returns its id.
func (s *SES) accept(m Sent) (string, error) {
	s.mu.Lock()
	s.seq++
	m.ID = fmt.Sprintf("%016x-%s-000000", s.seq, requestID())
	m.At = s.opts.Now()
	var failErr error
	if len(s.fails) > 0 {
		failErr, s.fails = s.fails[0], s.fails[1:]
	} else {
		failErr = s.quota.take(m.At, len(m.Destinations))
	}
	s.mu.Unlock()
	if failErr != nil {
		return "", failErr
	}
	if s.opts.OnSend != nil {
		if err := s.opts.OnSend(m); err != nil {
			return "", err
		}
	}
	if s.opts.EMLDir != "" {
		if err := writeEML(s.opts.EMLDir, m); err != nil {
			return "", err
		}
	}
	s.mu.Lock()
	s.sent = append(s.sent, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return m.ID, nil
}

// writeEML writes m's raw bytes to dir/<ID>.eml, atomically.
func writeEML(dir string, m Sent) error {
	tmp, err := os.CreateTemp(dir, ".eml-*")
	if err != nil {
		return fmt.Errorf("writing eml: %w", err)
	}
	_, err = tmp.Write(m.Raw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, m.ID+".eml"))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing eml: %w", err)
	}
	return nil
}

// parseSendRawEmail parses a v1 query-API request.
func parseSendRawEmail(r *http.Request) (Sent, error) {
	if err := r.ParseForm(); err != nil {
		return Sent{}, &SESError{Status: http.StatusBadRequest, Code: "MalformedQueryString", Message: err.Error()}
	}
	return sendRawEmailFromForm(r.PostForm)
}

func sendRawEmailFromForm(form url.Values) (Sent, error) {
	if a := form.Get("Action"); a != "SendRawEmail" {
		return Sent{}, &SESError{Status: http.StatusBadRequest, Code: "InvalidAction", Message: fmt.Sprintf("action %q is not supported by the fake", a)}
	}
	m := Sent{API: "ses", Source: form.Get("Source"), ConfigurationSet: form.Get("ConfigurationSetName")}
	// Destinations.member.1, .2, ...: bounded by the number of form keys.
	for i := 1; i <= len(form); i++ {
		d, ok := form["Destinations.member."+strconv.Itoa(i)]
		if !ok || len(d) == 0 {
			break
		}
		m.Destinations = append(m.Destinations, d[0])
	}
	for i := 1; i <= len(form); i++ {
		p := "Tags.member." + strconv.Itoa(i) + "."
		name, ok := form[p+"Name"]
		if !ok || len(name) == 0 {
			break
		}
		if err := m.addTag(name[0], form.Get(p+"Value")); err != nil {
			return Sent{}, err
		}
	}
	data, ok := form["RawMessage.Data"]
	if !ok || len(data) == 0 || data[0] == "" {
		return Sent{}, &SESError{Status: http.StatusBadRequest, Code: "MissingParameter", Message: "RawMessage.Data is required"}
	}
	raw, err := base64.StdEncoding.DecodeString(data[0])
	if err != nil {
		return Sent{}, &SESError{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: "RawMessage.Data is not base64: " + err.Error()}
	}
	m.Raw = raw
	return m, nil
}

// sendEmailV2 is the part of the SES v2 SendEmail request the fake reads.
type sendEmailV2 struct {
	FromEmailAddress     *string
	ConfigurationSetName *string
	EmailTags            []struct{ Name, Value string }
	Destination          *struct {
		ToAddresses, CcAddresses, BccAddresses []string
	}
	Content struct {
		Raw *struct{ Data []byte }
	}
}

// parseSendEmailV2 parses a v2 REST-JSON SendEmail request with raw content.
func parseSendEmailV2(r *http.Request) (Sent, error) {
	var req sendEmailV2
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return Sent{}, &SESError{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: "malformed JSON: " + err.Error()}
	}
	return sendEmailFromV2(req)
}

func sendEmailFromV2(req sendEmailV2) (Sent, error) {
	if req.Content.Raw == nil || len(req.Content.Raw.Data) == 0 {
		return Sent{}, &SESError{Status: http.StatusBadRequest, Code: "InvalidParameterValue", Message: "the fake only supports Content.Raw"}
	}
	m := Sent{API: "sesv2", Raw: req.Content.Raw.Data}
	if req.FromEmailAddress != nil {
		m.Source = *req.FromEmailAddress
	}
	if d := req.Destination; d != nil {
		m.Destinations = append(append(append(m.Destinations, d.ToAddresses...), d.CcAddresses...), d.BccAddresses...)
	}
	if req.ConfigurationSetName != nil {
		m.ConfigurationSet = *req.ConfigurationSetName
	}
	for _, t := range req.EmailTags {
		if err := m.addTag(t.Name, t.Value); err != nil {
			return Sent{}, err
		}
	}
	return m, nil
}

// addTag records a message tag, refusing what SES refuses.
func (m *Sent) addTag(name, value string) error {
	for _, v := range []string{name, value} {
		if !validTag(v) {
			return &SESError{Status: http.StatusBadRequest, Code: "InvalidParameterValue",
				Message: fmt.Sprintf("Invalid tag %s=%s: tag names and values contain only ASCII letters, digits, underscores and dashes, 1 to 256 characters.", name, value)}
		}
	}
	if m.Tags == nil {
		m.Tags = map[string]string{}
	}
	m.Tags[name] = value
	return nil
}

func validTag(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// WriteSESError answers err in the format of SES v1 (query API, XML) or,
// with v2, SESv2 (JSON); an err that is not an *SESError is an internal
// failure. Fault injectors in front of other SES stand-ins use it too.
func WriteSESError(w http.ResponseWriter, v2 bool, err error) {
	var se *SESError
	if !errors.As(err, &se) {
		se = &SESError{Status: ErrInternal.Status, Code: ErrInternal.Code, Message: err.Error()}
	}
	rid := requestID()
	if v2 {
		status, code := se.Status, se.Code
		if m, ok := v2Errors[code]; ok {
			status, code = m.status, m.code
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-ErrorType", code)
		w.Header().Set("X-Amzn-RequestId", rid)
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(struct {
			Message string `json:"message"`
		}{se.Message})
		return
	}
	typ := "Sender"
	if se.Status >= 500 {
		typ = "Receiver"
	}
	var b struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		XMLNS   string   `xml:"xmlns,attr"`
		Error   struct {
			Type    string
			Code    string
			Message string
		}
		RequestId string
	}
	b.XMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"
	b.Error.Type, b.Error.Code, b.Error.Message = typ, se.Code, se.Message
	b.RequestId = rid
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(se.Status)
	xml.NewEncoder(w).Encode(b)
}

// requestID returns a random id shaped like AWS request ids.
func requestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// startServer serves h on addr ("" for 127.0.0.1:0).
func startServer(addr string, h http.Handler) (*httptest.Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	return srv, nil
}
