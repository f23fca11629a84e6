package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/telemetry"
)

func start(t *testing.T, ready ReadyFunc) (string, *telemetry.Metrics) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := telemetry.NewMetrics()
	s := New(ln, ready, m, slog.New(slog.DiscardHandler))
	go func() { _ = s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String(), m
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	base, m := start(t, func() (bool, string) {
		if ready.Load() {
			return true, ""
		}
		return false, "draining"
	})
	m.SetQueueStats(func() telemetry.QueueStats { return telemetry.QueueStats{Messages: 7} })

	tests := []struct {
		name, path string
		setReady   bool
		code       int
		body       string
	}{
		{"live", "/livez", true, 200, "ok"},
		{"ready", "/readyz", true, 200, "ok"},
		{"not ready", "/readyz", false, 503, "draining"},
		{"live while not ready", "/livez", false, 200, "ok"},
		{"metrics", "/metrics", true, 200, "mailrelay_queue_messages 7"},
		{"unknown", "/nope", true, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.setReady)
			code, body := get(t, base+tt.path)
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Fatalf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.code, tt.body)
			}
		})
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, `mailrelay_health_request_duration_seconds_count{path="/livez"}`) {
		t.Errorf("health requests not timed: %d", code)
	}
	resp, err := http.Post(base+"/livez", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /livez = %d", resp.StatusCode)
	}
}
