package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const devMail = "From: Erin Example <erin@example.net>\r\n" +
	"To: shop@relay.example.com\r\n" +
	"Subject: Photos\r\n" +
	"Message-ID: <photos@example.net>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=windows-1252\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Caf\xe9 photos attached.\r\n" +
	"--b1\r\n" +
	"Content-Type: image/png; name=\"dot.png\"\r\n" +
	"Content-Disposition: attachment; filename=\"dot.png\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==\r\n" +
	"--b1--\r\n"

// TestDevCommand runs `mailrelay dev` on free ports in a temporary
// directory, pushes mail through it with `mailrelay dev send`, and stops it
// as Ctrl-C would.
func TestDevCommand(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--dir", filepath.Join(dir, "dev"), "--control", "127.0.0.1:0",
			"--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
			"--log-level", "warn"}, &out, &logs)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops") {
		select {
		case err := <-done:
			t.Fatalf("dev stopped: %v\n%s\n%s", err, out.String(), logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not come up in 20s:\n%s\n%s", out.String(), logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	banner := out.String()
	for _, want := range []string{"aliases.yaml", "outbox", "/metrics", "/livez", "/deadletters", "/sns", "fake S3", "fake SES"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	m := regexp.MustCompile(`sample: forwarded as shop@relay\.example\.com to you@example\.org: (\S+\.eml)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("sample not reported as forwarded:\n%s", banner)
	}
	checkForwarded(t, m[1], "shop@relay.example.com", nil)
	control := regexp.MustCompile(`--control (127\.0\.0\.1:\d+)`).FindStringSubmatch(banner)
	if control == nil {
		t.Fatalf("banner does not say how to reach the control server:\n%s", banner)
	}

	mailFile := filepath.Join(dir, "photos.eml")
	garbageFile := filepath.Join(dir, "garbage.eml")
	if err := os.WriteFile(mailFile, []byte(devMail), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbageFile, []byte("garbage, no header separator"), 0o600); err != nil {
		t.Fatal(err)
	}

	var sendOut bytes.Buffer
	if err := run(ctx, []string{"dev", "send", "--control", control[1], mailFile}, &sendOut, io.Discard); err != nil {
		t.Fatalf("dev send: %v\n%s", err, sendOut.String())
	}
	if !strings.Contains(sendOut.String(), "acknowledged by the relay (200)") {
		t.Errorf("dev send did not report the acknowledgement:\n%s", sendOut.String())
	}
	m = regexp.MustCompile(`forwarded as shop@relay\.example\.com to you@example\.org: (\S+\.eml)`).FindStringSubmatch(sendOut.String())
	if m == nil {
		t.Fatalf("dev send did not report the outbox file:\n%s", sendOut.String())
	}
	checkForwarded(t, m[1], "shop@relay.example.com", []byte(devMail))

	sendOut.Reset()
	if err := run(ctx, []string{"dev", "send", "--control", control[1], "--to", "shop@relay.example.com", garbageFile}, &sendOut, io.Discard); err != nil {
		t.Fatalf("dev send garbage: %v\n%s", err, sendOut.String())
	}
	if s := sendOut.String(); !strings.Contains(s, "acknowledged by the relay (200)") || !strings.Contains(s, "dead-lettered") || !strings.Contains(s, "malformed_mail") {
		t.Errorf("dev send of garbage printed:\n%s", s)
	}

	for _, args := range [][]string{
		{"dev", "send", "--control", control[1]},                                    // no file
		{"dev", "send", "--control", control[1], filepath.Join(dir, "missing.eml")}, // unreadable
		{"dev", "send", "--control", "127.0.0.1:1", mailFile},                       // nothing listening
		{"dev", "stray"},
	} {
		if err := run(ctx, args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}

	cancel() // Ctrl-C
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("dev exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dev did not stop in 20s")
	}
}

// checkForwarded asserts an outbox file is from alias and, if src is
// given, carries src's body byte for byte.
func checkForwarded(t *testing.T, path, alias string, src []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("outbox file: %v", err)
	}
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	from, err := r.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != alias {
		t.Errorf("From = %v (%v), want %s", from, err, alias)
	}
	if src == nil {
		return
	}
	sep := []byte("\r\n\r\n")
	got, want := raw[bytes.Index(raw, sep)+4:], src[bytes.Index(src, sep)+4:]
	if !bytes.Equal(got, want) {
		t.Errorf("body changed:\n got %q\nwant %q", got, want)
	}
}
