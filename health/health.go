// Package health serves /livez, /readyz and /metrics on a listener of its
// own, with its own goroutines and limits, so that it keeps answering in
// milliseconds while the inbound listener is flooded or every dependency
// hangs (the incident this relay exists to avoid began with health checks
// that could not answer). Nothing here calls a dependency.
package health

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailrelay/mailrelay/telemetry"
)

// ReadyFunc reports whether the relay should receive traffic, and if not why.
// It must be cheap and never block (read in-memory state only).
type ReadyFunc func() (ready bool, reason string)

// Server is the health listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// New builds the health server on ln.
func New(ln net.Listener, ready ReadyFunc, m *telemetry.Metrics, log *slog.Logger) *Server {
	mux := http.NewServeMux()
	timed := func(path string, h http.HandlerFunc) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			h(w, r)
			m.HealthRequests.WithLabelValues(strings.TrimPrefix(path, "GET ")).Observe(time.Since(start).Seconds())
		})
	}
	timed("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	timed("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ok, reason := ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(reason + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		Timeout:             5 * time.Second,
		MaxRequestsInFlight: 4,
	}))
	return &Server{
		ln:  ln,
		log: log,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 2 * time.Second,
			ReadTimeout:       5 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       30 * time.Second,
			MaxHeaderBytes:    8 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, waiting for requests in progress until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
