// Package snstest signs SNS messages the way Amazon SNS does, with a
// throw-away RSA key and self-signed certificate served over HTTP on
// 127.0.0.1. Tests, the load tool and the dev playground use it to produce
// deliveries that a sns.Verifier configured with the signer's certificate
// URL prefix accepts.
package snstest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns"
)

// CertPath is the path of the certificate below the served prefix, shaped
// like the names SNS uses.
const CertPath = "SimpleNotificationService-snstest.pem"

// Signer holds a key pair and signs SNS messages. It is safe for concurrent
// use.
type Signer struct {
	key     *rsa.PrivateKey
	certPEM []byte
	fetches atomic.Int64

	mu     sync.Mutex
	prefix string // certificate URL prefix, set by Serve
}

// NewSigner generates an RSA 2048 key and a self-signed certificate valid
// from an hour ago for a year.
func NewSigner() (*Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "sns.snstest.invalid"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating certificate: %w", err)
	}
	return &Signer{key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// New returns a serving Signer for a test, closed when the test ends.
func New(tb testing.TB) *Signer {
	tb.Helper()
	s, err := NewSigner()
	if err != nil {
		tb.Fatalf("snstest: %v", err)
	}
	_, closeFn := s.Serve()
	tb.Cleanup(closeFn)
	return s
}

// CertPEM returns the PEM-encoded certificate.
func (s *Signer) CertPEM() []byte { return append([]byte(nil), s.certPEM...) }

// Fetches reports how many times the certificate was downloaded.
func (s *Signer) Fetches() int64 { return s.fetches.Load() }

// Serve serves the certificate over HTTP on 127.0.0.1 and returns the URL
// prefix to allow (sns.VerifierOptions.CertURLPrefixes) and a func that
// stops the server. Every GET below the prefix other than CertPath is 404.
func (s *Signer) Serve() (certURLPrefix string, close func()) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sns/"+CertPath, func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(s.certPEM)
	})
	srv := Listen(mux)
	prefix := srv.URL + "/sns/"
	s.mu.Lock()
	s.prefix = prefix
	s.mu.Unlock()
	return prefix, srv.Close
}

// Listen serves h over HTTP on 127.0.0.1 (the host the tests' URL rules
// allow; httptest may pick [::1]). Close the server when done.
func Listen(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("snstest: listen on 127.0.0.1: %v", err))
	}
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	return srv
}

// Server is Listen, closed when tb's test ends.
func Server(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	srv := Listen(h)
	tb.Cleanup(srv.Close)
	return srv
}

// CertURL returns the URL of the served certificate ("" before Serve).
func (s *Signer) CertURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prefix == "" {
		return ""
	}
	return s.prefix + CertPath
}

// origin returns scheme://host of the served prefix, for Subscribe and
// Unsubscribe URLs.
func (s *Signer) origin() string {
	u, err := url.Parse(s.CertURL())
	if err != nil || u.Host == "" {
		return "http://127.0.0.1"
	}
	return u.Scheme + "://" + u.Host
}

// Sign sets m.SignatureVersion to version ("1": SHA1withRSA, "2":
// SHA256withRSA), m.SigningCertURL to CertURL() unless already set, and
// m.Signature to the base64 signature of m.StringToSign().
func (s *Signer) Sign(m *sns.Message, version string) error {
	var hash crypto.Hash
	switch version {
	case "1":
		hash = crypto.SHA1
	case "2":
		hash = crypto.SHA256
	default:
		return fmt.Errorf("snstest: signature version %q: want 1 or 2", version)
	}
	m.SignatureVersion = version
	if m.SigningCertURL == "" {
		m.SigningCertURL = s.CertURL()
	}
	str, err := m.StringToSign()
	if err != nil {
		return err
	}
	var digest []byte
	if hash == crypto.SHA1 {
		h := sha1.Sum(str)
		digest = h[:]
	} else {
		h := sha256.Sum256(str)
		digest = h[:]
	}
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, hash, digest)
	if err != nil {
		return fmt.Errorf("snstest: signing: %w", err)
	}
	m.Signature = base64.StdEncoding.EncodeToString(sig)
	return nil
}

// Body signs m with version and returns its JSON encoding. It panics if
// signing fails (only for an invalid version or type).
func (s *Signer) Body(m *sns.Message, version string) []byte {
	if err := s.Sign(m, version); err != nil {
		panic(err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("snstest: marshal: %v", err))
	}
	return b
}

// Timestamp formats t as SNS does (UTC, milliseconds).
func Timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Notification returns a signed Notification body. An empty subject is
// left out of the message (and of the signed string), as SNS does.
func (s *Signer) Notification(topicARN, messageID, subject, message, version string) []byte {
	m := &sns.Message{
		Type:           sns.TypeNotification,
		MessageId:      messageID,
		TopicArn:       topicARN,
		Subject:        subject,
		Message:        message,
		Timestamp:      Timestamp(time.Now()),
		UnsubscribeURL: s.origin() + "/?Action=Unsubscribe&SubscriptionArn=" + topicARN + ":" + randomHex(8),
	}
	return s.Body(m, version)
}

// SubscriptionConfirmation returns a SubscriptionConfirmation body signed
// with version 1 (the SNS default).
func (s *Signer) SubscriptionConfirmation(topicARN, subscribeURL string) []byte {
	return s.Body(s.Confirmation(sns.TypeSubscriptionConfirmation, topicARN, subscribeURL), "1")
}

// UnsubscribeConfirmation returns an UnsubscribeConfirmation body signed
// with version 1.
func (s *Signer) UnsubscribeConfirmation(topicARN, subscribeURL string) []byte {
	return s.Body(s.Confirmation(sns.TypeUnsubscribeConfirmation, topicARN, subscribeURL), "1")
}

// Confirmation returns an unsigned confirmation message of type typ with a
// fresh MessageId and Token, for callers that pick the signature version or
// alter fields before Body.
func (s *Signer) Confirmation(typ, topicARN, subscribeURL string) *sns.Message {
	text := "You have chosen to subscribe to the topic " + topicARN + ".\nTo confirm the subscription, visit the SubscribeURL included in this message."
	if typ == sns.TypeUnsubscribeConfirmation {
		text = "You have chosen to deactivate subscription to the topic " + topicARN + ".\nTo cancel this operation and restore the subscription, visit the SubscribeURL included in this message."
	}
	return &sns.Message{
		Type:         typ,
		MessageId:    NewMessageID(),
		Token:        randomHex(64),
		TopicArn:     topicARN,
		Message:      text,
		SubscribeURL: subscribeURL,
		Timestamp:    Timestamp(time.Now()),
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// NewMessageID returns a fresh SNS-style MessageId (a random UUID).
func NewMessageID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
