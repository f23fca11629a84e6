package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client talks to a running relay's admin API.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8082
	// Token is sent as Authorization: Bearer (none when empty).
	Token string
	HTTP  *http.Client
}

// StatusError is an answer other than the one expected.
type StatusError struct {
	Code    int
	Message string // the answer's "error", or its start
	Reason  string // the answer's "reason" (POST /sns/redrive)
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// Do sends a request to path (in: JSON body, nil for none; POST, PUT and
// PATCH always declare JSON) and decodes the JSON answer into out (unless
// nil). Any status but 200, 201 or 202 is a *StatusError.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		body = bytes.NewReader(b)
	}
	return c.do(ctx, method, path, body, out)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if body != nil || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted:
	default:
		se := &StatusError{Code: resp.StatusCode}
		var er ErrorResponse
		if json.Unmarshal(b, &er) == nil && er.Error != "" {
			se.Message, se.Reason = er.Error, er.Reason
		} else {
			se.Message = clip(strings.TrimSpace(string(b)))
		}
		return se
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin API: answer is not the JSON expected: %w", err)
	}
	return nil
}

// List returns up to limit dead letters, oldest first.
func (c *Client) List(ctx context.Context, limit int) ([]Item, error) {
	var items []Item
	return items, c.Do(ctx, http.MethodGet, fmt.Sprintf("/deadletters?limit=%d", limit), nil, &items)
}

// Redrive puts the named dead letters (or all) back into the spool. A
// partial success has Redriven > 0 and NotFound naming the unknown ids.
func (c *Client) Redrive(ctx context.Context, ids []string, all bool) (RedriveResponse, error) {
	var resp RedriveResponse
	return resp, c.Do(ctx, http.MethodPost, "/deadletters/redrive", RedriveRequest{IDs: ids, All: all}, &resp)
}

// Reconcile hands over a mail object the relay never heard of.
func (c *Client) Reconcile(ctx context.Context, req ReconcileRequest) (ReconcileResponse, error) {
	var resp ReconcileResponse
	return resp, c.Do(ctx, http.MethodPost, "/reconcile", req, &resp)
}

// RedriveSNS hands over one SNS message from the subscription's
// dead-letter queue, unchanged. A refusal by the SNS checks is a
// *StatusError with Reason set.
func (c *Client) RedriveSNS(ctx context.Context, body []byte) (SNSRedriveResponse, error) {
	var resp SNSRedriveResponse
	return resp, c.do(ctx, http.MethodPost, SNSRedrivePath, bytes.NewReader(body), &resp)
}
