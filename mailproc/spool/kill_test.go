package spool

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const helperDirEnv = "SPOOL_TEST_HELPER_DIR"

// TestHelperProcess is not a test: run by TestKillSafety as a child process,
// it Puts entries from several goroutines and prints "ACK <id>" for each Put
// that returned, until it is killed (or a bounded count is reached).
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process for TestKillSafety")
	}
	s, err := Open(dir, Options{Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var (
		mu sync.Mutex // one line per write
		wg sync.WaitGroup
	)
	payload := strings.Repeat("p", 2048)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5000 {
				id := fmt.Sprintf("g%d-%05d", g, i)
				if _, err := s.Put(context.Background(), entry(id, payload)); err != nil {
					fmt.Fprintln(os.Stderr, "put:", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ACK %s\n", id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(0)
}

// TestKillSafety SIGKILLs a process in the middle of Puts and checks that
// every Put it acknowledged is in the spool after reopening.
func TestKillSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-execs the test binary")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	const killAfter = 500
	acked := map[string]bool{}
	killed := false
	sc := bufio.NewScanner(stdout)
	// Bounded: the child prints at most 40,000 lines, then exits.
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "ACK ")
		if !ok {
			continue
		}
		acked[id] = true
		if !killed && len(acked) >= killAfter {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatalf("kill: %v", err)
			}
			killed = true
			// Lines already written before the kill are still read below.
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before it was killed (%d acked): %v", len(acked), err)
	}
	if ctx.Err() != nil {
		t.Fatal("child timed out")
	}
	t.Logf("child killed after %d acknowledged puts", len(acked))

	s := openTest(t, dir, Options{})
	st := s.Stats()
	if st.Messages < len(acked) {
		t.Errorf("reopened spool holds %d entries, %d were acknowledged", st.Messages, len(acked))
	}
	missing := 0
	for id := range acked {
		dup, err := s.Put(context.Background(), entry(id, "again"))
		if err != nil {
			t.Fatalf("put %s: %v", id, err)
		}
		if !dup {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged entries lost", missing, len(acked))
	}
	// The payload is intact for what was acknowledged.
	for range min(st.Messages, 20) {
		e := mustNext(t, s)
		if len(e.Payload) != 2048 {
			t.Fatalf("%s: payload of %d bytes", e.ID, len(e.Payload))
		}
	}
}
