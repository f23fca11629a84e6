package incident

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestInjector runs each fault kind against an upstream that counts its
// requests, through a real listener.
func TestInjector(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   Target
		phase    Phase
		timeout  time.Duration
		status   int    // 0: the client must get no answer
		body     string // part of the answer
		upstream bool   // the request must reach the upstream
	}{
		{"latency short", TargetS3, Phase{Kind: KindLatency, Latency: time.Millisecond}, 5 * time.Second, 200, "upstream", true},
		{"latency beyond the client", TargetS3, Phase{Kind: KindLatency, Latency: time.Hour}, 200 * time.Millisecond, 0, "", false},
		{"hang", TargetSES, Phase{Kind: KindHang}, 200 * time.Millisecond, 0, "", false},
		{"reset", TargetS3, Phase{Kind: KindReset}, 5 * time.Second, 0, "", false},
		{"s3 500", TargetS3, Phase{Kind: KindStatus500}, 5 * time.Second, 500, "<Code>InternalError</Code>", false},
		{"s3 throttle", TargetS3, Phase{Kind: KindThrottle}, 5 * time.Second, 503, "<Code>SlowDown</Code>", false},
		{"ses 500", TargetSES, Phase{Kind: KindStatus500}, 5 * time.Second, 500, "<Code>InternalFailure</Code>", false},
		{"ses throttle", TargetSES, Phase{Kind: KindThrottle}, 5 * time.Second, 400, "<Code>Throttling</Code>", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reached atomic.Int64
			upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached.Add(1)
				io.Copy(io.Discard, r.Body)
				w.Write([]byte("upstream"))
			})
			p := tc.phase
			p.Target, p.Start, p.Length = tc.target, 0, time.Hour
			other := Phase{Target: TargetS3, Kind: KindHang, Length: time.Hour}
			if tc.target == TargetS3 {
				other.Target = TargetSES
			}
			fs, err := startFaultServer(newInjector(tc.target, []Phase{p, other}, upstream))
			if err != nil {
				t.Fatal(err)
			}
			defer fs.close()
			client := &http.Client{Timeout: tc.timeout}
			post := func() (int, string, error) {
				resp, err := client.Post(fs.url+"/x", "text/plain", strings.NewReader("Action=SendRawEmail"))
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}

			// Not armed yet: passed on.
			if code, _, err := post(); err != nil || code != 200 || reached.Load() != 1 {
				t.Fatalf("before begin: %d, %v, upstream reached %d times: want 200 through", code, err, reached.Load())
			}
			fs.begin(time.Now())
			code, body, err := post()
			switch {
			case tc.status == 0 && err == nil:
				t.Errorf("got %d %q, want no answer", code, body)
			case tc.status != 0 && (err != nil || code != tc.status || !strings.Contains(body, tc.body)):
				t.Errorf("got %d %q (%v), want %d with %q", code, body, err, tc.status, tc.body)
			}
			if got, want := reached.Load() == 2, tc.upstream; got != want {
				t.Errorf("upstream reached %d times in all, want the faulted request passed on: %v", reached.Load(), want)
			}
			if fs.hits[0].Load() != 1 || len(fs.phases) != 1 || fs.requests.Load() != 2 {
				t.Errorf("hits %d, phases %d, requests %d: want 1, 1 (the other target's phase ignored), 2",
					fs.hits[0].Load(), len(fs.phases), fs.requests.Load())
			}

			// Over: passed on again.
			fs.begin(time.Now().Add(-2 * time.Hour))
			before := reached.Load()
			if code, _, err := post(); err != nil || code != 200 || reached.Load() != before+1 {
				t.Errorf("after the phase: %d, %v: want 200 through", code, err)
			}
		})
	}
}

// TestInjectorRelease: a hang is ended by release (shutdown) with no answer,
// never with an empty 200 (an S3 client would take that for an empty mail).
func TestInjectorRelease(t *testing.T) {
	fs, err := startFaultServer(newInjector(TargetS3, []Phase{{Target: TargetS3, Kind: KindHang, Length: time.Hour}},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("upstream")) })))
	if err != nil {
		t.Fatal(err)
	}
	fs.begin(time.Now())
	done := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(fs.url + "/bucket/key")
		if err == nil {
			resp.Body.Close()
			done <- &statusError{resp.StatusCode}
			return
		}
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); fs.requests.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never arrived")
		}
	}
	fs.close()
	err = <-done
	if se, ok := err.(*statusError); ok {
		t.Fatalf("released hang answered %d, want no answer", se.code)
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }
