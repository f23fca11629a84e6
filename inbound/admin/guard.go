package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// DefaultMaxBodyBytes caps the body of every admin request but the SNS
// redrive (which takes up to the SNS endpoint's limit): 413 above.
const DefaultMaxBodyBytes = 64 << 10

// guard applies the rules every request meets before its handler, in this
// order: the bearer token (401) or, without a token, a loopback Host (403,
// DNS rebinding); no cross-site browser marker (403, CSRF); a known path
// (404) and method (405); a JSON body (415); the body size (413, at once
// for a declared length, else while the handler reads). It answers the
// refusals itself (JSON) and reports whether the handler may run.
func (a *api) guard(w http.ResponseWriter, r *http.Request) bool {
	if a.token != nil {
		if !a.authorized(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="mailrelay-admin"`)
			a.refuse(w, r, http.StatusUnauthorized, "missing or wrong bearer token: send Authorization: Bearer $RELAY_ADMIN_TOKEN")
			return false
		}
	} else if !loopbackHost(r.Host) {
		a.refuse(w, r, http.StatusForbidden, "Host must be a loopback address (127.0.0.1, ::1, localhost) when no admin token is set")
		return false
	}
	if why := crossSite(r); why != "" {
		a.refuse(w, r, http.StatusForbidden, "cross-site request refused: "+why)
		return false
	}
	return true
}

// authorized compares the Authorization header with the token in constant
// time. Both sides are hashed first, so neither the comparison nor its
// length check tells anything about the token's length.
func (a *api) authorized(header string) bool {
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		cred = "" // still compared: the same work for every request
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	return subtle.ConstantTimeCompare(got[:], a.token) == 1 && ok
}

// refuse answers a request the guard turned away and logs it (never the
// Authorization header).
func (a *api) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	a.log.Warn("admin request refused", "code", code, "method", r.Method, "path", clip(r.URL.Path),
		"remote", r.RemoteAddr, "host", clip(r.Host), "why", msg)
	writeError(w, code, msg)
}

// loopbackHost reports whether a Host header names this machine's loopback:
// localhost or a loopback IP, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// crossSite returns why r carries a browser's mark of a request made by a
// page of another site, or "". A CLI sends neither header.
func crossSite(r *http.Request) string {
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("Sec-Fetch-Site")), "cross-site") {
		return "Sec-Fetch-Site: cross-site"
	}
	origins, present := r.Header["Origin"]
	if !present {
		return ""
	}
	for _, o := range origins {
		u, err := url.Parse(strings.TrimSpace(o))
		if err != nil || u.Host == "" || !loopbackHost(u.Host) {
			return fmt.Sprintf("Origin %.100q is not a loopback origin", o)
		}
	}
	return ""
}

// checkBody refuses a request whose body is not JSON (415) or is declared
// larger than max (413), and caps what the handler can read at max. Every
// POST, PUT and PATCH counts as having a body, so that a browser's simple
// (form or text/plain) request never reaches a handler.
func checkBody(w http.ResponseWriter, r *http.Request, max int64) bool {
	if max <= 0 {
		max = DefaultMaxBodyBytes
	}
	hasBody := r.ContentLength != 0 || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch
	if !hasBody {
		return true
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	if r.ContentLength > max {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes is over the limit of %d", r.ContentLength, max))
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, max)
	return true
}

// decodeJSON reads exactly one JSON object into v, refusing unknown fields
// and anything after the object (400, with hint appended when given) and a
// body over the limit (413). It answers the refusal itself and reports
// whether v was filled.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, hint ...string) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("want one JSON object and nothing after it")
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				err = terr
			}
		}
	}
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over the limit of %d bytes", mbe.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, strings.Join(append([]string{"empty body: want a JSON object"}, hint...), " "))
	default:
		writeError(w, http.StatusBadRequest, strings.Join(append([]string{"bad request: " + err.Error()}, hint...), " "))
	}
	return false
}

// readBody reads the whole (capped) body; false after answering 413/400.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over the limit of %d bytes", mbe.Limit))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		return nil, false
	}
	return b, true
}

// ErrorResponse is the body of every answer that is not a success.
type ErrorResponse struct {
	Error string `json:"error"`
	// Reason is set by POST /sns/redrive when the SNS checks decided
	// (the reason POST /sns would log: bad_signature, spool_full, …).
	Reason string `json:"reason,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// statusRecorder keeps the status a fallback handler of the mux (404, 405
// with its Allow header) would write, so that it is answered in JSON.
type statusRecorder struct {
	h    http.Header
	code int
}

func (s *statusRecorder) Header() http.Header         { return s.h }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
}

// clip bounds caller-controlled strings in logs.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
