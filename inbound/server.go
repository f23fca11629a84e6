package inbound

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/mailrelay/mailrelay/telemetry"
)

// Timeouts and limits of the server NewServer builds. Slow or stuck clients
// cannot hold a connection longer than these (a request body: at most the
// Handler's BodyTimeout once its headers are read; ReadTimeout is the
// backstop for other paths); the handler itself waits at most one
// certificate FetchTimeout plus the store's fsync. IdleTimeout is short:
// SNS opens connections as it needs them, and an idle keep-alive
// connection is a slot an attacker could hoard (LimitListener also closes
// idle connections first when the limit is reached).
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 5 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// NewServer returns an echo instance for the inbound listener: no banner, an
// error handler that answers plain status text (never internal error
// details), panic recovery, and timeouts on e.Server (used by e.Start; copy
// them when serving e from another http.Server). Register a Handler on it.
func NewServer(metrics *telemetry.Metrics, logger *slog.Logger) *echo.Echo {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Server.ReadHeaderTimeout = ReadHeaderTimeout
	e.Server.ReadTimeout = ReadTimeout
	e.Server.WriteTimeout = WriteTimeout
	e.Server.IdleTimeout = IdleTimeout
	e.Server.MaxHeaderBytes = MaxHeaderBytes
	e.Server.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code := http.StatusInternalServerError
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
		}
		if code >= 500 {
			logger.Error("inbound request failed", "path", c.Request().URL.Path, "code", code, "err", err)
		}
		if c.Request().Method == http.MethodHead {
			c.NoContent(code)
			return
		}
		c.String(code, http.StatusText(code)+"\n")
	}
	e.Use(Recover(metrics, logger))
	return e
}

// Recover is echo middleware that turns a panic into a 500 answer, logs it
// with its stack and counts mailrelay_panics_total{where="inbound"}.
func Recover(metrics *telemetry.Metrics, logger *slog.Logger) echo.MiddlewareFunc {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				r := recover()
				if r == nil {
					return
				}
				if r == http.ErrAbortHandler {
					panic(r)
				}
				if metrics != nil {
					metrics.Panics.WithLabelValues("inbound").Inc()
				}
				logger.Error("panic in inbound handler", "path", c.Request().URL.Path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = nil
				if !c.Response().Committed {
					c.String(http.StatusInternalServerError, http.StatusText(http.StatusInternalServerError)+"\n")
				}
			}()
			return next(c)
		}
	}
}

// ObserveSNS returns a sns.VerifierOptions.Observe func that records
// mailrelay_external_call_duration_seconds{service="sns"}.
func ObserveSNS(m *telemetry.Metrics) func(operation, outcome string, d time.Duration) {
	return func(operation, outcome string, d time.Duration) {
		m.ExternalCallDuration.WithLabelValues("sns", operation, outcome).Observe(d.Seconds())
	}
}
