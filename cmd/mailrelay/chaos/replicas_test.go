package chaos

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// replicaLease is the claim lease of the replica tests: the takeover time
// after a replica dies.
const replicaLease = 3 * time.Second

// cluster is n relay binaries on one PostgreSQL database and one set of
// S3/SES stand-ins, each with a spool directory of its own (unused with a
// database: deleting it must cost nothing).
type cluster struct {
	t        *testing.T
	replicas []*relayProc
	spools   []string
	signer   *snstest.Signer
	s3       *fakes.S3
	ses      *fakes.SES
	client   *http.Client
}

func startCluster(t *testing.T, n int, dbURL string, sesLatency time.Duration) *cluster {
	t.Helper()
	return startClusterWith(t, n, dbURL, clusterOptions{SES: fakes.SESOptions{Latency: sesLatency}})
}

// clusterOptions vary the cluster: the SES stand-in's options, a handler
// in front of it (e.g. an outage), settings added to every replica.
type clusterOptions struct {
	SES      fakes.SESOptions
	SESFront func(*fakes.SES) http.Handler
	Env      []string
}

func startClusterWith(t *testing.T, n int, dbURL string, o clusterOptions) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs relay binaries on PostgreSQL; skipped with -short")
	}
	dir := t.TempDir()
	st := newStage(t, dir, o.SES)
	bin, signer, prefix, s3, ses, aliasFile, home := st.bin, st.signer, st.certPrefix, st.s3, st.ses, st.aliasFile, st.home
	sesURL := ses.URL()
	if o.SESFront != nil {
		front := httptest.NewServer(o.SESFront(ses))
		t.Cleanup(front.Close)
		sesURL = front.URL
	}
	c := &cluster{t: t, signer: signer, s3: s3, ses: ses,
		client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	for i := range n {
		spoolDir := filepath.Join(dir, "spool-"+strconv.Itoa(i))
		r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, fmt.Sprintf("relay-%d.log", i)), inbound: freeAddr(t), health: freeAddr(t)}
		r.env = relayEnv(home, r, s3.URL(), sesURL, prefix, spoolDir, aliasFile,
			append([]string{"RELAY_DATABASE_URL=" + dbURL, "RELAY_DATABASE_LEASE=" + replicaLease.String(), "RELAY_LOG_LEVEL=info"}, o.Env...)...)
		if err := r.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) })
		c.replicas = append(c.replicas, r)
		c.spools = append(c.spools, spoolDir)
	}
	for _, r := range c.replicas {
		r.waitReady()
	}
	return c
}

// notification stores mail i in S3 and returns its signed SNS delivery.
func (c *cluster) notification(i int) []byte {
	c.t.Helper()
	key := fmt.Sprintf("inbound/ses-%d", i)
	if err := c.s3.Put(bucket, key, mailFor(i)); err != nil {
		c.t.Fatal(err)
	}
	return c.signer.Notification(topic, fmt.Sprintf("sns-%d", i), "Amazon SES Email Receipt Notification",
		receivedS3(fmt.Sprintf("ses-%d", i), key), "2")
}

// post delivers body to replica r once and returns the status (0 when the
// connection failed).
func (c *cluster) post(r *relayProc, body []byte) int {
	resp, err := c.client.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// deliver posts body like SNS: to replica r, retried until 200 or ctx ends.
func (c *cluster) deliver(ctx context.Context, r *relayProc, body []byte) bool {
	for delay := 50 * time.Millisecond; ctx.Err() == nil; delay = min(2*delay, time.Second) {
		if c.post(r, body) == 200 {
			return true
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
	return false
}

// waitForwarded waits (bounded) until n distinct mails were sent, then
// returns how many copies were sent in all.
func (c *cluster) waitForwarded(n int, within time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for countIDs(c.ses.Sent()) < n {
		if time.Now().After(deadline) {
			var logs string
			for _, r := range c.replicas {
				logs += r.logTail()
			}
			c.t.Fatalf("%d distinct mails forwarded within %v, want %d; logs:\n%s", countIDs(c.ses.Sent()), within, n, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * replicaLease) // room for a duplicate to show
	return len(c.ses.Sent())
}

// A notification delivered to one replica and again to another (an SNS
// retry after a lost answer), or to both at the same moment, is answered
// 200 by each and forwarded once.
func TestReplicasForwardOnce(t *testing.T) {
	c := startCluster(t, 2, pgtest.NewDatabase(t), 0)
	a, b := c.replicas[0], c.replicas[1]

	// Redelivery to the other replica.
	n0 := c.notification(0)
	if st := c.post(a, n0); st != 200 {
		t.Fatalf("first delivery: %d", st)
	}
	if st := c.post(b, n0); st != 200 {
		t.Fatalf("redelivery to the other replica: %d, want 200 (a duplicate)", st)
	}
	// The same notification to both at once, several times.
	const together = 10
	for i := 1; i <= together; i++ {
		body := c.notification(i)
		var wg sync.WaitGroup
		status := make([]int, 2)
		for j, r := range []*relayProc{a, b} {
			wg.Go(func() { status[j] = c.post(r, body) })
		}
		wg.Wait()
		if status[0] != 200 || status[1] != 200 {
			t.Fatalf("notification %d posted to both at once: %v, want 200 and 200", i, status)
		}
	}
	if sent := c.waitForwarded(1+together, 20*time.Second); sent != 1+together {
		t.Errorf("%d copies sent for %d mails, want one each", sent, 1+together)
	}
}

// A replica killed with SIGKILL while it holds work, its spool directory
// deleted and never started again: every notification any replica
// acknowledged is forwarded by the others within the lease. A duplicate is
// possible only for a copy SES accepted while the dead replica had not yet
// recorded it: at most one per worker that was sending when it died.
// The same with SIGTERM, where the replica releases what it holds.
func TestReplicaLostLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sig    syscall.Signal
		spares int // duplicates tolerated
	}{
		{"kill -9", syscall.SIGKILL, workers},
		{"SIGTERM", syscall.SIGTERM, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// SES is slow enough that the victim holds work when it dies.
			c := startCluster(t, 2, pgtest.NewDatabase(t), 40*time.Millisecond)
			victim, survivor := c.replicas[0], c.replicas[1]
			const n = 120
			bodies := make([][]byte, n)
			for i := range n {
				bodies[i] = c.notification(i)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// Every notification goes to the victim first; it acknowledges
			// them all before it dies (so they exist only in PostgreSQL).
			var wg sync.WaitGroup
			sem := make(chan struct{}, 8)
			for _, body := range bodies {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					if st := c.post(victim, body); st != 200 {
						t.Errorf("delivery to the victim: %d", st)
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			before := countIDs(c.ses.Sent())
			if err := victim.signal(tc.sig, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(c.spools[0]); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d of %d forwarded when the victim got %v", before, n, tc.sig)
			if before == n {
				t.Fatalf("everything was forwarded before the %v: the test shows nothing", tc.sig)
			}
			// SNS retries go to the survivor: all duplicates of what was acknowledged.
			for _, body := range bodies[:10] {
				if !c.deliver(ctx, survivor, body) {
					t.Fatal("the survivor does not answer")
				}
			}
			sent := c.waitForwarded(n, 20*time.Second+replicaLease)
			if dup := sent - n; dup > tc.spares {
				t.Errorf("%d duplicates after one %v, want at most %d", dup, tc.sig, tc.spares)
			} else {
				t.Logf("%d duplicates after one %v", dup, tc.sig)
			}
		})
	}
}

// PostgreSQL stopped in the middle of a run: deliveries answer 503 (SNS
// retries them), /livez stays 200 and /readyz says why; once it is back,
// everything acknowledged and everything retried is forwarded. A copy SES
// accepted just as the database went away has no sent-record and is sent
// again (the crash window): at most one per worker sending at that moment.
func TestReplicasDatabaseOutage(t *testing.T) {
	srv := pgtest.StartPrivate(t)
	c := startCluster(t, 2, srv.NewDatabase(t), 0)
	a, b := c.replicas[0], c.replicas[1]
	const n = 40
	for i := range n / 2 {
		if st := c.post(c.replicas[i%2], c.notification(i)); st != 200 {
			t.Fatalf("delivery %d before the outage: %d", i, st)
		}
	}
	srv.Stop(t)
	late := c.notification(n / 2)
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := c.post(a, late)
		if st == 503 {
			break
		}
		if st == 200 || time.Now().After(deadline) {
			t.Fatalf("delivery with the database down: %d, want 503", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := statusOf(t, "http://"+b.health+"/livez"); st != 200 {
		t.Errorf("/livez with the database down: %d, want 200", st)
	}
	waitStatus(t, "http://"+b.health+"/readyz", 503, 15*time.Second)

	srv.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := n / 2; i < n; i++ {
		body := late
		if i > n/2 {
			body = c.notification(i)
		}
		if !c.deliver(ctx, c.replicas[i%2], body) {
			t.Fatalf("delivery %d after the outage not acknowledged", i)
		}
	}
	waitStatus(t, "http://"+a.health+"/readyz", 200, 20*time.Second)
	sent := c.waitForwarded(n, 30*time.Second)
	if dup := sent - n; dup > 2*workers {
		t.Errorf("%d copies sent for %d mails: %d duplicates from one outage, want at most %d", sent, n, dup, 2*workers)
	} else {
		t.Logf("%d duplicates after the outage", dup)
	}
}

func statusOf(t *testing.T, url string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Second}).Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitStatus polls url until it answers want, or fails the test.
func waitStatus(t *testing.T, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for statusOf(t, url) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %d within %v", url, want, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
