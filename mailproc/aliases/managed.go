package aliases

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// State is what the relay does with mail for a managed alias.
type State string

const (
	// StateEnabled: mail is forwarded.
	StateEnabled State = "enabled"
	// StateDisabled: nothing is forwarded; mail is dropped
	// (reason alias_disabled).
	StateDisabled State = "disabled"
	// StateBlockPromotional: mail with a List-Id or List-Unsubscribe header
	// or Precedence bulk, list or junk is dropped (reason
	// promotional_blocked); other mail is forwarded.
	StateBlockPromotional State = "block_promotional"
)

// Valid reports whether s is one of the three states.
func (s State) Valid() bool {
	return s == StateEnabled || s == StateDisabled || s == StateBlockPromotional
}

// Source says where an alias is defined.
const (
	SourceFile    = "file"    // RELAY_ALIASES_FILE: read-only at run time
	SourceManaged = "managed" // the alias store: created and changed through the admin API
)

var (
	// ErrNotFound: no alias has that address.
	ErrNotFound = errors.New("alias not found")
	// ErrExists: an alias with that address exists already.
	ErrExists = errors.New("alias exists already")
	// ErrReadOnly: the alias is defined in the alias file, which the API
	// does not change.
	ErrReadOnly = errors.New("alias is defined in the alias file, which is read-only at run time: change the file instead")
	// ErrInvalid: a request to create or change an alias is not valid.
	ErrInvalid = errors.New("invalid alias")
)

// Counts are an alias's counters.
type Counts struct {
	Forwarded int64     `json:"forwarded"`
	Blocked   int64     `json:"blocked"`
	Replied   int64     `json:"replied"`
	Spam      int64     `json:"spam"`
	LastUsed  time.Time `json:"last_used,omitzero"`
}

// Alias is an alias as the admin API shows it: a managed one with its
// state, description and counters, or one of the alias file (Source
// "file", always enabled, no counters).
type Alias struct {
	Address     string    `json:"address"`
	ForwardTo   []string  `json:"forward_to"`
	State       State     `json:"state"`
	Description string    `json:"description,omitempty"`
	Source      string    `json:"source"`
	Created     time.Time `json:"created,omitzero"`
	Counts
}

// Event is something that happened to mail for an alias, counted in its
// counters.
type Event int

const (
	EventForwarded Event = iota // a copy was sent
	EventBlocked                // dropped by the alias's state (disabled, promotional)
	EventReplied                // a reply went out through the alias
	EventSpam                   // dropped or tagged as spam
)

// MaxDescription is the longest description accepted, in bytes.
const MaxDescription = 500

// RandomLocal returns a random, unguessable alias local part: 80 bits
// from crypto/rand in lower-case base32 (16 characters of a-z2-7).
func RandomLocal() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// NewAlias validates a request to create a managed alias against the
// relay domains of t and returns the alias to store (state enabled,
// addresses normalised). address is "local@domain", "local" (on domain) or
// "" (a random local part on domain); domain "" means t's first domain.
// Errors wrap ErrInvalid.
func (t *Table) NewAlias(address, domain string, forwardTo []string, description string, now time.Time) (Alias, error) {
	bad := func(format string, args ...any) (Alias, error) {
		return Alias{}, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	domain = normDomain(strings.TrimSpace(domain))
	address = strings.TrimSpace(address)
	local := address
	if at := strings.LastIndexByte(address, '@'); at >= 0 {
		local = address[:at]
		d := normDomain(address[at+1:])
		if domain != "" && d != domain {
			return bad("address %q is not on domain %q", address, domain)
		}
		domain = d
	}
	if domain == "" {
		domain = t.FirstDomain()
	}
	if !t.IsOurDomain(domain) {
		return bad("domain %q is not a relay domain (relay domains: %s)", domain, strings.Join(t.Domains(), ", "))
	}
	local = strings.ToLower(local)
	if local == "" {
		if address != "" {
			return bad("address %q has an empty local part (a catch-all cannot be managed; omit the address for a random one)", address)
		}
		local = RandomLocal()
	}
	if err := checkLocal(local); err != nil {
		return bad("address %q: bad local part: %v", local+"@"+domain, err)
	}
	if len(forwardTo) == 0 {
		return bad("no destination (to) given")
	}
	if len(forwardTo) > 50 {
		return bad("%d destinations: at most 50", len(forwardTo))
	}
	fw := make([]string, 0, len(forwardTo))
	for _, to := range forwardTo {
		norm, err := t.checkForward(to)
		if err != nil {
			return bad("destination %q: %v", to, err)
		}
		if slices.ContainsFunc(fw, func(s string) bool { return strings.EqualFold(s, norm) }) {
			return bad("destination %q: listed twice", to)
		}
		fw = append(fw, norm)
	}
	description = strings.TrimSpace(description)
	if len(description) > MaxDescription {
		return bad("description is %d bytes: at most %d", len(description), MaxDescription)
	}
	for _, r := range description {
		if r < ' ' || r == 0x7f {
			return bad("description contains a control character")
		}
	}
	return Alias{
		Address: local + "@" + domain, ForwardTo: fw, State: StateEnabled,
		Description: description, Source: SourceManaged, Created: now.UTC().Truncate(time.Millisecond),
	}, nil
}

// FileAlias returns the alias file's exact alias with address (normalised
// as Resolve does, without plus-addressing), or false.
func (t *Table) FileAlias(address string) (Alias, bool) {
	key := CanonicalAddress(address)
	fw, ok := t.exact[key]
	if !ok {
		return Alias{}, false
	}
	return Alias{Address: key, ForwardTo: slices.Clone(fw), State: StateEnabled, Source: SourceFile}, true
}

// FileAliases returns the alias file's exact aliases, sorted by address
// (catch-alls are not aliases one can show or change).
func (t *Table) FileAliases() []Alias {
	out := make([]Alias, 0, len(t.exact))
	for a, fw := range t.exact {
		out = append(out, Alias{Address: a, ForwardTo: slices.Clone(fw), State: StateEnabled, Source: SourceFile})
	}
	slices.SortFunc(out, func(a, b Alias) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// CanonicalAddress lower-cases address and removes surrounding brackets,
// blanks and a trailing dot of the domain: the key aliases are stored
// under. It does not strip a +tag (an alias never has one).
func CanonicalAddress(address string) string {
	s := strings.TrimSpace(address)
	if len(s) >= 2 && s[0] == '<' && s[len(s)-1] == '>' {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return strings.ToLower(s)
	}
	return strings.ToLower(s[:at]) + "@" + normDomain(s[at+1:])
}
