// Package aliases reads the alias file and resolves a recipient on a relay
// domain to the alias it belongs to and the addresses to forward to.
//
// The alias file is YAML (see the operator contract):
//
//	domains: [relay.example.com]          # mail for other domains is not ours
//	aliases:
//	  - address: shop@relay.example.com   # exact alias
//	    forward_to: [alice@example.org]
//	  - address: "@relay.example.com"     # catch-all for the domain
//	    forward_to: [ops@example.org]
//
// Lookups are case-insensitive in both the local part and the domain, strip
// plus-addressing ("shop+tag@" resolves to "shop@"), and prefer an exact alias
// over the catch-all of its domain.
//
// Resolver is the interface the mail processor depends on; Table is the
// in-memory implementation built from the file and Reloadable swaps tables
// atomically on SIGHUP, when the file changes (WatchFile) or on request.
//
// Managed aliases (created through the admin API, with a State and
// counters) live in a Store (mailproc/aliasdb: SQLite or PostgreSQL);
// Combined resolves the file's aliases first, then the store's through a
// short-lived cache, then the file's catch-alls; Manager creates and changes
// managed aliases and refuses to change the file's.
package aliases

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

var (
	// ErrNotOurDomain is returned by Resolve for an address whose domain is
	// not a relay domain (or that has no domain at all).
	ErrNotOurDomain = errors.New("not a relay domain")
	// ErrUnknownAlias is returned by Resolve for an address on a relay domain
	// that matches no alias and no catch-all.
	ErrUnknownAlias = errors.New("unknown alias")
	// ErrInvalidRecipient is returned by Resolve for an address on a relay
	// domain whose local part is not one the relay can send from: not an
	// ASCII dot-atom (a quoted `"a b"@relay`, spaces, brackets, 8-bit), or
	// longer than 64 characters. A catch-all would otherwise make it the
	// alias, the From of the copy, which SES refuses: retrying cannot help.
	ErrInvalidRecipient = errors.New("invalid recipient")
)

// Route is where mail for one recipient goes.
type Route struct {
	// Alias is the canonical alias address, e.g. "shop@relay.example.com":
	// lower-cased, without a +tag. The forwarded copy is sent with this as
	// From. For a catch-all hit it is the address as received (lower-cased,
	// without +tag), not "@domain".
	Alias string
	// ForwardTo are the destination addresses. The slice is the caller's
	// to keep; changing it does not affect the table.
	ForwardTo []string
	// State is the alias's state: "" (the alias file's, and a catch-all
	// hit) means StateEnabled. Only managed aliases have another.
	State State
}

// Resolver maps a recipient address to its Route. Errors wrap
// ErrNotOurDomain or ErrUnknownAlias when the mail is simply not for us;
// ErrInvalidRecipient when it can never be forwarded; any other error (a
// failed database query, a cancelled context) means the lookup could not be
// done and may succeed later.
type Resolver interface {
	Resolve(ctx context.Context, address string) (Route, error)
}

// Table is an immutable, validated alias table. It is safe for concurrent
// use. Build one with Parse or Load.
type Table struct {
	domains  map[string]struct{}
	order    []string            // domains in the order the file lists them
	exact    map[string][]string // "local@domain" -> forward_to
	catchAll map[string][]string // "domain" -> forward_to
}

var _ Resolver = (*Table)(nil)

// IsOurDomain reports whether domain is one of the relay domains. The
// comparison is case-insensitive and ignores a trailing dot.
func (t *Table) IsOurDomain(domain string) bool {
	_, ok := t.domains[normDomain(domain)]
	return ok
}

// Domains returns the relay domains, sorted.
func (t *Table) Domains() []string {
	l := make([]string, 0, len(t.domains))
	for d := range t.domains {
		l = append(l, d)
	}
	slices.Sort(l)
	return l
}

// FirstDomain returns the first relay domain the file lists: where a
// managed alias is created when no domain is given.
func (t *Table) FirstDomain() string {
	if len(t.order) == 0 {
		return ""
	}
	return t.order[0]
}

// Len returns the number of aliases, catch-alls included.
func (t *Table) Len() int {
	return len(t.exact) + len(t.catchAll)
}

// Resolve returns the route for address, a plain addr-spec such as an SES
// receipt recipient ("Shop+Tag@Relay.Example.com"; surrounding angle
// brackets and spaces are tolerated). An exact alias wins over the catch-all
// of the domain. Errors wrap ErrNotOurDomain (no domain, or a domain that is
// not ours), ErrUnknownAlias (ours, but no alias and no catch-all, or an
// empty local part) or ErrInvalidRecipient (ours, but the local part is not
// an ASCII dot-atom of at most 64 characters; "+" allowed).
func (t *Table) Resolve(ctx context.Context, address string) (Route, error) {
	alias, domain, err := t.normalise(ctx, address)
	if err != nil {
		return Route{}, err
	}
	if fw, ok := t.exact[alias]; ok {
		return Route{Alias: alias, ForwardTo: slices.Clone(fw)}, nil
	}
	return t.catchAllRoute(alias, domain)
}

// normalise checks a received address as Resolve does and returns the alias
// it would be looked up as ("local@domain", lower-cased, +tag removed) and
// its domain.
func (t *Table) normalise(ctx context.Context, address string) (alias, domain string, err error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	local, domain, ok := splitRecipient(address)
	if !ok {
		return "", "", fmt.Errorf("%w: %q has no domain", ErrNotOurDomain, address)
	}
	if _, ok := t.domains[domain]; !ok {
		return "", "", fmt.Errorf("%w: %q", ErrNotOurDomain, domain)
	}
	if local == "" {
		return "", "", fmt.Errorf("%w: %q has an empty local part", ErrUnknownAlias, address)
	}
	if err := checkRecipientLocal(local); err != nil {
		return "", "", fmt.Errorf("%w: %.100q: %v", ErrInvalidRecipient, address, err)
	}
	return local + "@" + domain, domain, nil
}

// catchAllRoute routes alias to its domain's catch-all, or says it is
// unknown.
func (t *Table) catchAllRoute(alias, domain string) (Route, error) {
	if fw, ok := t.catchAll[domain]; ok {
		return Route{Alias: alias, ForwardTo: slices.Clone(fw)}, nil
	}
	return Route{}, fmt.Errorf("%w: %q", ErrUnknownAlias, alias)
}

// splitRecipient normalises a received recipient address into its base
// local part (lower-cased, +tag removed) and domain (lower-cased, trailing dot
// removed). ok is false when there is no "@" or no domain.
func splitRecipient(address string) (local, domain string, ok bool) {
	s := strings.TrimSpace(address)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", "", false
	}
	local, domain = s[:at], normDomain(s[at+1:])
	if domain == "" {
		return "", "", false
	}
	// Plus-addressing: "shop+tag" is "shop". A local part that starts with
	// "+" has no base to fall back to and is looked up as it is.
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return strings.ToLower(local), domain, true
}

// checkRecipientLocal validates the local part of a received address (base
// part, lower-cased): an RFC 5322 dot-atom of ASCII atext, "+" allowed (a
// catch-all hit on "+tag@" keeps it), at most 64 characters (RFC 5321).
func checkRecipientLocal(l string) error {
	if len(l) > 64 {
		return errors.New("local part longer than 64 characters")
	}
	if l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, "..") {
		return errors.New("misplaced '.' in the local part")
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '+':
		case strings.IndexByte("!#$%&'*-/=?^_`{|}~", c) >= 0:
		default:
			return fmt.Errorf("invalid character %q in the local part", c)
		}
	}
	return nil
}

// normDomain lower-cases a domain and removes one trailing dot.
func normDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	return strings.ToLower(d)
}
