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

	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// AliasAdmin is what the alias endpoints need (implemented by
// *aliases.Manager): managed aliases in the store, the alias file's
// read-only. Errors wrap aliases.ErrInvalid (400), ErrNotFound (404),
// ErrExists or ErrReadOnly (409); any other is a 500.
type AliasAdmin interface {
	List(ctx context.Context) ([]aliases.Alias, error)
	Get(ctx context.Context, address string) (aliases.Alias, error)
	Create(ctx context.Context, to []string, domain, address, description string) (aliases.Alias, error)
	SetState(ctx context.Context, address string, s aliases.State) (aliases.Alias, error)
	Delete(ctx context.Context, address string) error
}

// MaxAliasRequestBytes caps a POST /aliases body.
const MaxAliasRequestBytes = 16 << 10

// CreateAliasRequest is the body of POST /aliases. To is one destination
// ("to": "a@example.org") or several ("to": ["a@…", "b@…"]); Address is
// "local@domain", "local", or empty for a random local part on Domain
// (empty: the first relay domain).
type CreateAliasRequest struct {
	To          Destinations `json:"to"`
	Domain      string       `json:"domain,omitempty"`
	Address     string       `json:"address,omitempty"`
	Description string       `json:"description,omitempty"`
}

// Destinations is a JSON string or array of strings.
type Destinations []string

// UnmarshalJSON accepts "a@example.org" or ["a@example.org", …].
func (d *Destinations) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*d = Destinations{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return errors.New(`"to": want an address or an array of addresses`)
	}
	*d = l
	return nil
}

// DeleteAliasResponse answers DELETE /aliases/{address}.
type DeleteAliasResponse struct {
	Address string `json:"address"`
	Deleted bool   `json:"deleted"`
}

// DecodeCreateAlias reads a CreateAliasRequest: one JSON object, no
// unknown fields, nothing after it, at most MaxAliasRequestBytes.
func DecodeCreateAlias(r io.Reader) (CreateAliasRequest, error) {
	var req CreateAliasRequest
	body, err := io.ReadAll(io.LimitReader(r, MaxAliasRequestBytes+1))
	if err != nil {
		return req, fmt.Errorf("reading body: %w", err)
	}
	if len(body) > MaxAliasRequestBytes {
		return req, errTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return CreateAliasRequest{}, fmt.Errorf("want a JSON object {\"to\": …, \"domain\", \"address\", \"description\"}: %w", err)
	}
	if dec.More() {
		return CreateAliasRequest{}, errors.New("want one JSON object, found more after it")
	}
	if len(req.To) == 0 {
		return CreateAliasRequest{}, errors.New(`"to" is required: the address(es) to forward to`)
	}
	return req, nil
}

var errTooLarge = fmt.Errorf("body larger than %d bytes", MaxAliasRequestBytes)

// maxAddressLen bounds the {address} of a path (RFC 5321: 64 + 1 + 255).
const maxAddressLen = 320

// RegisterAliases adds the alias endpoints to mux:
//
//	GET    /aliases                              every alias (file and managed), JSON array
//	POST   /aliases                              create (CreateAliasRequest) → 201 and the alias
//	GET    /aliases/{address}                    one alias
//	POST   /aliases/{address}/disable            state disabled
//	POST   /aliases/{address}/enable             state enabled
//	POST   /aliases/{address}/block-promotional  state block_promotional
//	DELETE /aliases/{address}                    remove a managed alias
//
// Answers are JSON; errors are {"error": "..."} with 400 (bad request), 404
// (no such alias or action), 409 (exists, or defined in the read-only alias
// file), 413 (body too large) or 500.
func RegisterAliases(mux *http.ServeMux, m AliasAdmin, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(w http.ResponseWriter, err error) {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, aliases.ErrInvalid):
			code = http.StatusBadRequest
		case errors.Is(err, aliases.ErrNotFound):
			code = http.StatusNotFound
		case errors.Is(err, aliases.ErrExists), errors.Is(err, aliases.ErrReadOnly):
			code = http.StatusConflict
		case errors.Is(err, errTooLarge):
			code = http.StatusRequestEntityTooLarge
		default:
			log.Error("alias API", "err", err)
		}
		writeJSON(w, code, ErrorResponse{Error: err.Error()})
	}
	address := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		a := r.PathValue("address")
		if a == "" || len(a) > maxAddressLen {
			writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("want an alias address of 1 to %d characters in the path", maxAddressLen)})
			return "", false
		}
		return a, true
	}

	mux.HandleFunc("GET /aliases", func(w http.ResponseWriter, r *http.Request) {
		l, err := m.List(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		if l == nil {
			l = []aliases.Alias{}
		}
		writeJSON(w, http.StatusOK, l)
	})
	mux.HandleFunc("POST /aliases", func(w http.ResponseWriter, r *http.Request) {
		req, err := DecodeCreateAlias(r.Body)
		if err != nil {
			if !errors.Is(err, errTooLarge) {
				err = fmt.Errorf("%w: %w", aliases.ErrInvalid, err)
			}
			fail(w, err)
			return
		}
		a, err := m.Create(r.Context(), req.To, req.Domain, req.Address, req.Description)
		if err != nil {
			fail(w, err)
			return
		}
		log.Info("alias created", "alias", a.Address, "destinations", len(a.ForwardTo))
		writeJSON(w, http.StatusCreated, a)
	})
	mux.HandleFunc("GET /aliases/{address}", func(w http.ResponseWriter, r *http.Request) {
		addr, ok := address(w, r)
		if !ok {
			return
		}
		a, err := m.Get(r.Context(), addr)
		if err != nil {
			fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("POST /aliases/{address}/{action}", func(w http.ResponseWriter, r *http.Request) {
		addr, ok := address(w, r)
		if !ok {
			return
		}
		var s aliases.State
		switch r.PathValue("action") {
		case "disable":
			s = aliases.StateDisabled
		case "enable":
			s = aliases.StateEnabled
		case "block-promotional":
			s = aliases.StateBlockPromotional
		default:
			writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("unknown action %q: want disable, enable or block-promotional", r.PathValue("action"))})
			return
		}
		a, err := m.SetState(r.Context(), addr, s)
		if err != nil {
			fail(w, err)
			return
		}
		log.Info("alias state changed", "alias", a.Address, "state", a.State)
		writeJSON(w, http.StatusOK, a)
	})
	mux.HandleFunc("DELETE /aliases/{address}", func(w http.ResponseWriter, r *http.Request) {
		addr, ok := address(w, r)
		if !ok {
			return
		}
		if err := m.Delete(r.Context(), addr); err != nil {
			fail(w, err)
			return
		}
		log.Info("alias deleted", "alias", addr)
		writeJSON(w, http.StatusOK, DeleteAliasResponse{Address: aliases.CanonicalAddress(addr), Deleted: true})
	})
}
