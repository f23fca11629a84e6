package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
)

// MaxMailBytes caps a mail accepted by POST /send (SES receives at most
// 40 MB).
const MaxMailBytes = 40 << 20

// Info is the control server's GET / answer: where to look.
type Info struct {
	Inbound     string `json:"inbound"` // the relay's SNS endpoint URL
	Health      string `json:"health"`  // health listener base URL (/livez, /readyz, /metrics)
	Admin       string `json:"admin"`   // admin API base URL
	AliasesFile string `json:"aliases_file"`
	OutboxDir   string `json:"outbox_dir"`
	InboundDir  string `json:"inbound_dir"`
	S3          string `json:"s3"`
	SES         string `json:"ses"`
}

// Info returns where the playground's parts are.
func (st *Stack) Info() Info {
	admin := ""
	if st.Relay.AdminAddr != "" {
		admin = "http://" + st.Relay.AdminAddr
	}
	return Info{
		Inbound:     "http://" + st.Relay.InboundAddr + "/sns",
		Health:      "http://" + st.Relay.HealthAddr,
		Admin:       admin,
		AliasesFile: st.AliasesFile,
		OutboxDir:   st.OutboxDir,
		InboundDir:  st.InboundDir,
		S3:          st.S3URL + "/" + Bucket,
		SES:         st.SESURL,
	}
}

// controlHandler serves:
//
//	GET  /                       Info
//	POST /send?to=a@b[,c@d]      body: a raw mail; answers SendResult
//	GET  /sent?ses_id=ID         answers Status
func (st *Stack) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, st.Info())
	})
	mux.HandleFunc("POST /send", func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxMailBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, fmt.Sprintf("mail larger than %d bytes", MaxMailBytes), http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "reading the mail: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(raw) == 0 {
			http.Error(w, "empty body: POST the raw mail (curl --data-binary @mail.eml)", http.StatusBadRequest)
			return
		}
		var to []string
		for _, v := range r.URL.Query()["to"] {
			to = append(to, config.SplitList(v)...)
		}
		res, err := st.Send(r.Context(), raw, to)
		switch {
		case errors.Is(err, ErrNoRecipient):
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /sent", func(w http.ResponseWriter, r *http.Request) {
		s, err := st.Status(r.URL.Query().Get("ses_id"))
		switch {
		case errors.Is(err, ErrUnknownMail):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, s)
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

// Client talks to a running playground's control server.
type Client struct {
	BaseURL string       // e.g. http://127.0.0.1:8025
	HTTP    *http.Client // nil: a client with a 30 s timeout
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// Info returns where the playground's parts are.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/", nil)
	if err != nil {
		return info, err
	}
	return info, c.do(req, &info)
}

// Send pushes raw through the playground to recipients (empty: the mail's
// To/Cc addresses on a relay domain).
func (c *Client) Send(ctx context.Context, raw []byte, recipients []string) (SendResult, error) {
	var res SendResult
	u := c.BaseURL + "/send"
	if len(recipients) > 0 {
		u += "?to=" + url.QueryEscape(strings.Join(recipients, ","))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(raw))
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "message/rfc822")
	return res, c.do(req, &res)
}

// Status returns where the mail with SES message id sesID is.
func (c *Client) Status(ctx context.Context, sesID string) (Status, error) {
	var s Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/sent?ses_id="+url.QueryEscape(sesID), nil)
	if err != nil {
		return s, err
	}
	return s, c.do(req, &s)
}

// WaitFinished polls Status until the mail is finished or ctx ends; it
// returns the last status seen either way, with ctx's error if it ended.
func (c *Client) WaitFinished(ctx context.Context, sesID string) (Status, error) {
	return waitFinished(ctx, func() (Status, error) { return c.Status(ctx, sesID) })
}

func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return fmt.Errorf("playground control server: %w (is 'mailrelay dev' running?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("playground control server: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("playground control server: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("playground control server: decoding answer: %w", err)
	}
	return nil
}
