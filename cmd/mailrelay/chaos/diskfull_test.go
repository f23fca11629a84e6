package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
)

// mountTmpfs mounts a tmpfs of size at dir (created), unmounted at Cleanup.
// It skips the test, loudly, when not root or when the mount fails.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: needs root to mount a small tmpfs (the real disk-full test did not run)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: mount -t tmpfs failed (the real disk-full test did not run): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
}

// fill writes a file at path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			return
		}
	}
}

func (r *relayProc) status(path string) int {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + r.health + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (r *relayProc) alive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.exited:
		return false
	default:
		return true
	}
}

func (r *relayProc) logLines() int {
	b, _ := os.ReadFile(r.logPath)
	return bytes.Count(b, []byte("\n"))
}

// TestDiskFull runs the relay binary with its spool on a 16 MiB tmpfs, fills
// the tmpfs, and checks: /sns answers 503 with Retry-After (or 200, only for
// what was stored), /readyz 503, /livez 200, the process lives, its log stays
// short, and what was accepted before is forwarded; a restart on the full
// disk (twice: the second without a ballast left) comes up the same way;
// once space is
// freed deliveries are accepted again, and every delivery answered 200 was
// forwarded.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the relay binary and mounts a tmpfs; skipped with -short")
	}
	dir := t.TempDir()
	fsDir := filepath.Join(dir, "spoolfs")
	mountTmpfs(t, fsDir, "16m")
	st := newStage(t, dir, fakes.SESOptions{Latency: time.Second})
	bin, signer, prefix, s3, ses, aliasFile, home := st.bin, st.signer, st.certPrefix, st.s3, st.ses, st.aliasFile, st.home
	r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(t), health: freeAddr(t)}
	r.env = relayEnv(home, r, s3.URL(), ses.URL(), prefix, filepath.Join(fsDir, "spool"), aliasFile,
		"RELAY_LOG_LEVEL=info", "RELAY_SPOOL_RESERVE_BYTES="+fmt.Sprint(2<<20))
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) }()
	r.waitReady()

	const n = 60
	for i := range n {
		if err := s3.Put(bucket, fmt.Sprintf("inbound/ses-%d", i), mailFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	acked := map[int]bool{}
	// post posts delivery i once and returns the status and Retry-After.
	post := func(i int) (int, string) {
		body := signer.Notification(topic, fmt.Sprintf("sns-%d", i), "Amazon SES Email Receipt Notification",
			receivedS3(fmt.Sprintf("ses-%d", i), fmt.Sprintf("inbound/ses-%d", i)), "2")
		resp, err := client.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
		if err != nil {
			return 0, ""
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			acked[i] = true
		}
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	for i := range 10 {
		if code, _ := post(i); code != 200 {
			t.Fatalf("delivery %d before the disk filled: %d", i, code)
		}
	}

	// checkFull checks the relay's answers on a full disk for deliveries
	// from..to and returns the next delivery number.
	checkFull := func(what string, from, to int) int {
		t.Helper()
		linesBefore := r.logLines()
		deadline := time.Now().Add(10 * time.Second)
		for r.status("/readyz") != 503 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz not 503 within 10s; log:\n%s", what, r.logTail())
			}
			time.Sleep(50 * time.Millisecond)
		}
		refused := 0
		for i := from; i < to; i++ {
			code, ra := post(i)
			switch {
			case code == 503 && ra != "":
				refused++
			case code == 200: // stored: must be forwarded
			default:
				t.Errorf("%s: delivery %d answered %d, Retry-After %q; want 503 with Retry-After", what, i, code, ra)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if refused == 0 {
			t.Errorf("%s: no delivery refused on a full disk", what)
		}
		if c := r.status("/livez"); c != 200 {
			t.Errorf("%s: /livez %d, want 200", what, c)
		}
		if c := r.status("/readyz"); c != 503 {
			t.Errorf("%s: /readyz %d, want 503", what, c)
		}
		if !r.alive() {
			t.Fatalf("%s: the relay exited; log:\n%s", what, r.logTail())
		}
		if lines := r.logLines() - linesBefore; lines > 100 {
			t.Errorf("%s: %d log lines in %d deliveries: a log storm; log:\n%s", what, lines, to-from, r.logTail())
		}
		t.Logf("%s: %d of %d deliveries refused with 503", what, refused, to-from)
		return to
	}

	filler := filepath.Join(fsDir, "filler")
	fill(t, filler)
	next := checkFull("disk full", 10, 30)

	// A restart on the full disk comes up, not ready, and refuses; twice,
	// the second without a ballast left.
	for restart := range 2 {
		if err := r.signal(syscall.SIGTERM, 15*time.Second); err != nil {
			t.Errorf("SIGTERM on a full disk: %v", err)
		}
		// Whatever the last run freed (the ballast) is taken too.
		fill(t, fmt.Sprintf("%s-%d", filler, restart))
		if err := r.start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for r.status("/livez") != 200 {
			if time.Now().After(deadline) || !r.alive() {
				t.Fatalf("restart %d on a full disk: /livez not 200 (alive %v); log:\n%s", restart+1, r.alive(), r.logTail())
			}
			time.Sleep(50 * time.Millisecond)
		}
		next = checkFull(fmt.Sprintf("restart %d on a full disk", restart+1), next, next+5)
	}

	// Space returns: deliveries resume.
	for _, f := range []string{filler, filler + "-0", filler + "-1"} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	r.waitReady()
	for i := next; i < n; i++ {
		if code, _ := post(i); code != 200 {
			t.Errorf("delivery %d after space returned: %d", i, code)
		}
	}
	// Everything answered 200 is forwarded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		sent := map[string]bool{}
		for _, s := range ses.Sent() {
			sent[messageID(s.Raw)] = true
		}
		var missing []int
		for i := range acked {
			if !sent[fmt.Sprintf("chaos-%d@example.net", i)] {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged deliveries not forwarded: %v; log:\n%s", missing, r.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d deliveries acknowledged and forwarded, %d log lines in all", len(acked), r.logLines())
	if os.Getenv("CHAOS_SHOW_LOG") != "" {
		b, _ := os.ReadFile(r.logPath)
		t.Logf("log:\n%s", b)
	}
	if err := r.signal(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Error(err)
	}
	if b, _ := os.ReadFile(r.logPath); strings.Contains(string(b), "fatal error") || strings.Contains(string(b), "panic") {
		t.Errorf("crash in the log:\n%s", r.logTail())
	}
}
