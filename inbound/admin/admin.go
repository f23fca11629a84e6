// Package admin is the operator's API for the dead-letter store: list what
// failed permanently and why, and redrive it into the spool once the cause
// is fixed. It is served on its own listener (loopback by default: reach it
// with `kubectl exec ... mailrelay deadletter list`), and the CLI in cmd is
// its client.
package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// Queue is what the admin API needs of the spool (implemented by
// *spool.Spool).
type Queue interface {
	DeadLetters(limit int) ([]spool.DeadLetter, error)
	Redrive(ids ...string) (int, error)
	Put(ctx context.Context, e spool.Entry) (duplicate bool, err error)
}

// MaxReconcileBytes caps a POST /reconcile body (an SES notification).
const MaxReconcileBytes = 256 << 10

// ReconcileResponse answers POST /reconcile.
type ReconcileResponse struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate"`
}

// Item is one dead letter as the API shows it (payload omitted: it can be large).
type Item struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind,omitempty"`
	Reason     string    `json:"reason"`
	DeadAt     time.Time `json:"dead_at"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	Attempts   int       `json:"attempts"`
	Bytes      int       `json:"bytes"`
}

// RedriveRequest names the ids to redrive; All redrives everything.
type RedriveRequest struct {
	IDs []string `json:"ids,omitempty"`
	All bool     `json:"all,omitempty"`
}

// RedriveResponse says how many entries went back to the spool, and which
// of the named ids were not dead letters (the others were redriven).
type RedriveResponse struct {
	Redriven int    `json:"redriven"`
	NotFound string `json:"not_found,omitempty"`
}

// Handler returns the admin API.
func Handler(q Queue, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /deadletters", func(w http.ResponseWriter, r *http.Request) {
		limit := 1000
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				http.Error(w, "limit: want a positive number", http.StatusBadRequest)
				return
			}
			limit = n
		}
		dls, err := q.DeadLetters(limit)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		items := make([]Item, 0, len(dls))
		for _, d := range dls {
			items = append(items, Item{ID: d.ID, Kind: d.Kind, Reason: d.Reason, DeadAt: d.DeadAt,
				EnqueuedAt: d.EnqueuedAt, Attempts: d.Attempts, Bytes: len(d.Payload)})
		}
		writeJSON(w, http.StatusOK, items)
	})
	mux.HandleFunc("POST /deadletters/redrive", func(w http.ResponseWriter, r *http.Request) {
		var req RedriveRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if req.All == (len(req.IDs) > 0) {
			http.Error(w, "give either ids or all, not both or neither", http.StatusBadRequest)
			return
		}
		n, err := q.Redrive(req.IDs...)
		switch {
		case errors.Is(err, spool.ErrNotFound) && n > 0:
			// Partial: the known ids went back; say which were unknown.
			log.Info("dead letters redriven", "count", n, "not_found", err.Error())
			writeJSON(w, http.StatusOK, RedriveResponse{Redriven: n, NotFound: err.Error()})
			return
		case errors.Is(err, spool.ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		log.Info("dead letters redriven", "count", n, "ids", req.IDs)
		writeJSON(w, http.StatusOK, RedriveResponse{Redriven: n})
	})
	// POST /reconcile takes an SES "Received" notification for a mail
	// object the relay never heard of (built by `mailrelay reconcile`) and
	// spools it under the id reconcile:<bucket>/<key>, so handing the same
	// object over twice is harmless. 202 spooled or known; 400 not such a
	// notification; 503 spool full.
	mux.HandleFunc("POST /reconcile", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxReconcileBytes+1))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(body) > MaxReconcileBytes {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		n, err := sesnotify.Parse(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if n.NotificationType != sesnotify.TypeReceived || n.Receipt == nil || n.Receipt.Action.Type != sesnotify.ActionS3 ||
			n.Receipt.Action.BucketName == "" || n.Receipt.Action.ObjectKey == "" {
			http.Error(w, "want a Received notification with an S3 action naming bucket and key", http.StatusBadRequest)
			return
		}
		id := "reconcile:" + n.Receipt.Action.BucketName + "/" + n.Receipt.Action.ObjectKey
		dup, err := q.Put(r.Context(), spool.Entry{ID: id, Kind: n.NotificationType, Payload: body, EnqueuedAt: time.Now().UTC()})
		switch {
		case errors.Is(err, spool.ErrInvalidID):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			w.Header().Set("Retry-After", strconv.Itoa(int(inbound.DefaultRetryAfter/time.Second)))
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		log.Info("reconciled object handed over", "id", id, "duplicate", dup)
		writeJSON(w, http.StatusAccepted, ReconcileResponse{ID: id, Duplicate: dup})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Client talks to a running relay's admin API.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8082
	HTTP    *http.Client
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// List returns up to limit dead letters, oldest first.
func (c *Client) List(ctx context.Context, limit int) ([]Item, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/deadletters?limit=%d", c.BaseURL, limit), nil)
	if err != nil {
		return nil, err
	}
	var items []Item
	return items, c.do(req, &items)
}

// Redrive puts the named dead letters (or all) back into the spool. A
// partial success has Redriven > 0 and NotFound naming the unknown ids.
func (c *Client) Redrive(ctx context.Context, ids []string, all bool) (RedriveResponse, error) {
	body, _ := json.Marshal(RedriveRequest{IDs: ids, All: all})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+"/deadletters/redrive", bytes.NewReader(body))
	if err != nil {
		return RedriveResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var resp RedriveResponse
	return resp, c.do(req, &resp)
}

func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin API: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, out)
}
