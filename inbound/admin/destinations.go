package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

// DestinationAdmin is what the destination endpoints need (implemented by
// *feedback.Handler): the destinations SES bounces paused.
type DestinationAdmin interface {
	PausedDestinations(ctx context.Context) ([]feedback.Pause, error)
	Destination(ctx context.Context, address string) (p feedback.Pause, ok bool, err error)
	Unpause(ctx context.Context, address string) (bool, error)
}

// Destination is a destination address as the API shows it: paused (until
// Until, since Since, by a bounce of Kind with Reason) or not.
type Destination struct {
	Address string    `json:"address"`
	Paused  bool      `json:"paused"`
	Kind    string    `json:"bounce_type,omitempty"` // Permanent, Transient, Undetermined
	Reason  string    `json:"reason,omitempty"`      // the bounce's sub-type and diagnostic
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
}

// UnpauseResponse answers POST /destinations/{address}/unpause.
type UnpauseResponse struct {
	Address  string `json:"address"`
	Unpaused bool   `json:"unpaused"`
}

func destinationOf(p feedback.Pause) Destination {
	return Destination{Address: p.Address, Paused: true, Kind: p.Kind, Reason: p.Reason, Since: p.Since.UTC(), Until: p.Until.UTC()}
}

// RegisterDestinations adds the destination endpoints to mux:
//
//	GET  /destinations                      the paused destinations, JSON array
//	GET  /destinations/{address}            one destination: paused or not
//	POST /destinations/{address}/unpause    end its pause now (404 if it had none)
//
// Mail held for a paused destination is dead-lettered with reason
// destination_paused: redrive it after the unpause. Errors are
// {"error": "..."} with 400 (bad address), 404 or 500.
func RegisterDestinations(mux *http.ServeMux, d DestinationAdmin, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(w http.ResponseWriter, err error) {
		log.Error("destination API", "err", err)
		writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: err.Error()})
	}
	address := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		a := strings.ToLower(strings.TrimSpace(r.PathValue("address")))
		if a == "" || len(a) > maxAddressLen || !strings.Contains(a, "@") {
			writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("want a destination address (local@domain, at most %d characters) in the path", maxAddressLen)})
			return "", false
		}
		return a, true
	}
	mux.HandleFunc("GET /destinations", func(w http.ResponseWriter, r *http.Request) {
		l, err := d.PausedDestinations(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		out := make([]Destination, 0, len(l))
		for _, p := range l {
			out = append(out, destinationOf(p))
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /destinations/{address}", func(w http.ResponseWriter, r *http.Request) {
		addr, ok := address(w, r)
		if !ok {
			return
		}
		p, paused, err := d.Destination(r.Context(), addr)
		if err != nil {
			fail(w, err)
			return
		}
		if !paused {
			writeJSON(w, http.StatusOK, Destination{Address: addr})
			return
		}
		writeJSON(w, http.StatusOK, destinationOf(p))
	})
	mux.HandleFunc("POST /destinations/{address}/{action}", func(w http.ResponseWriter, r *http.Request) {
		addr, ok := address(w, r)
		if !ok {
			return
		}
		if r.PathValue("action") != "unpause" {
			writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("unknown action %q: want unpause", r.PathValue("action"))})
			return
		}
		done, err := d.Unpause(r.Context(), addr)
		if err != nil {
			fail(w, err)
			return
		}
		if !done {
			writeJSON(w, http.StatusNotFound, ErrorResponse{Error: addr + " is not paused"})
			return
		}
		log.Info("destination unpaused", "address", addr)
		writeJSON(w, http.StatusOK, UnpauseResponse{Address: addr, Unpaused: true})
	})
}
