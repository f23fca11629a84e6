// Package reply makes and reads reply addresses: addresses on a relay
// domain through which a destination of an alias answers the original
// sender without showing its own address. A reply address carries, in its
// local part, the alias's local part, the original sender's address and the
// day it was issued, with an authentication tag (HMAC-SHA256 keyed with the
// relay's reply key, cut to 65 bits) over all of it and the domain. Nothing
// is stored: an address is checked by recomputing its tag, so it cannot be
// guessed or forged without the key, and it is refused once it is older
// than the codec's maximum age.
//
// Layout of the local part (at most 64 octets, RFC 5321 4.5.3.1.1):
//
//	"r1-" tag(13) body
//
// tag and body are lower-case RFC 4648 base32 digits (a-z, 2-7), 5 bits
// each, without padding: mail systems may change the case of a local part,
// and base32 survives that (decoding folds case). body holds the issue day
// (16 bits: days since 1970-01-01 UTC) then "aliaslocal@sender" packed as
// 6-bit symbols (see pack), then fewer than 6 zero bits. A common sender
// (newsletter@mail.example.com) with a short alias fits; one that does not
// makes Encode fail with ErrTooLong, and the caller falls back (the relay
// keeps the original sender in Reply-To and says so in its log).
package reply

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Prefix starts the local part of every reply address (version 1).
const Prefix = "r1-"

// MaxLocalLen is the longest local part RFC 5321 allows.
const MaxLocalLen = 64

// MinKeyBytes is the shortest key New accepts.
const MinKeyBytes = 32

// DefaultMaxAge is how long a reply address is accepted when the caller
// sets no age: 90 days, long enough to answer a mail weeks later, short
// enough that a leaked address stops working.
const DefaultMaxAge = 90 * 24 * time.Hour

const (
	tagChars = 13 // 65 bits of HMAC-SHA256
	dayBits  = 16
	symBits  = 6
	// maxBodyChars is what is left of the local part for the body.
	maxBodyChars = MaxLocalLen - len(Prefix) - tagChars
	// MaxSymbols is how many 6-bit symbols the body holds at most.
	MaxSymbols = (maxBodyChars*5 - dayBits) / symBits
)

// Errors of Encode and Decode.
var (
	// ErrTooLong: alias and sender do not fit in a local part.
	ErrTooLong = errors.New("reply: alias and sender do not fit in a 64-octet local part")
	// ErrNotReply: the address does not have the shape of a reply address
	// (it may be an alias).
	ErrNotReply = errors.New("reply: not a reply address")
	// ErrTampered: shaped like a reply address, but its tag does not
	// verify under any key (forged, altered, or made with a retired key).
	ErrTampered = errors.New("reply: reply address does not authenticate")
	// ErrExpired: authentic but issued more than the maximum age ago (or
	// dated in the future).
	ErrExpired = errors.New("reply: reply address expired")
)

// Address is what a reply address says.
type Address struct {
	Alias  string    // the alias, local part and the reply address's domain
	Sender string    // the original sender, where replies go
	Issued time.Time // the day the address was made (UTC midnight)
}

// Codec makes and checks reply addresses. It is safe for concurrent use.
type Codec struct {
	keys   [][]byte // current first, then the previous one
	maxAge time.Duration
}

// New returns a codec signing with key and accepting addresses signed with
// key or previous (empty: none), for maxAge (<= 0: DefaultMaxAge). Keys are
// secrets of at least MinKeyBytes bytes.
func New(key, previous []byte, maxAge time.Duration) (*Codec, error) {
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("reply: key of %d bytes, want at least %d", len(key), MinKeyBytes)
	}
	c := &Codec{keys: [][]byte{append([]byte(nil), key...)}, maxAge: maxAge}
	if len(previous) > 0 {
		if len(previous) < MinKeyBytes {
			return nil, fmt.Errorf("reply: previous key of %d bytes, want at least %d", len(previous), MinKeyBytes)
		}
		c.keys = append(c.keys, append([]byte(nil), previous...))
	}
	if c.maxAge <= 0 {
		c.maxAge = DefaultMaxAge
	}
	return c, nil
}

// Encode returns the reply address through which a destination of alias
// answers sender, issued on now's day. alias and sender are plain
// addresses (local@domain); the reply address is on the alias's domain.
// The sender's domain is lower-cased (domains are case-insensitive); its
// local part keeps its case.
func (c *Codec) Encode(alias, sender string, now time.Time) (string, error) {
	aLocal, domain, ok := split(alias)
	if !ok || strings.IndexByte(aLocal, '@') >= 0 {
		return "", fmt.Errorf("reply: invalid alias %q", alias)
	}
	sLocal, sDomain, ok := split(sender)
	if !ok {
		return "", fmt.Errorf("reply: invalid sender %q", sender)
	}
	day := epochDay(now)
	if day < 0 || day > 0xffff {
		return "", fmt.Errorf("reply: date %s out of range", now.UTC().Format(time.DateOnly))
	}
	syms := pack(aLocal + "@" + sLocal + "@" + strings.ToLower(sDomain))
	if len(syms) > MaxSymbols {
		return "", ErrTooLong
	}
	var w bitWriter
	w.write(uint32(day), dayBits)
	for _, s := range syms {
		w.write(uint32(s), symBits)
	}
	body := w.base32()
	return Prefix + c.tag(c.keys[0], domain, body) + body + "@" + strings.ToLower(domain), nil
}

// Looks reports whether address has the shape of a reply address, without
// checking its tag: an address that Looks and fails Decode is a tampered
// or expired reply address, not an alias.
func Looks(address string) bool {
	local, _, ok := split(address)
	return ok && looksLocal(local)
}

func looksLocal(local string) bool {
	if len(local) > MaxLocalLen || len(local) < len(Prefix)+tagChars+(dayBits+4)/5 || !strings.EqualFold(local[:len(Prefix)], Prefix) {
		return false
	}
	for i := len(Prefix); i < len(local); i++ {
		if fromBase32(local[i]) < 0 {
			return false
		}
	}
	return true
}

// Decode checks a reply address and returns what it says. It fails with
// ErrNotReply for an address that is not shaped like one, ErrTampered when
// the tag verifies under no key or the content is not valid, ErrExpired
// when it is older than the maximum age at now (or issued after now's
// next day).
func (c *Codec) Decode(address string, now time.Time) (Address, error) {
	local, domain, ok := split(address)
	if !ok || !looksLocal(local) {
		return Address{}, ErrNotReply
	}
	rest := strings.ToLower(local[len(Prefix):])
	tag, body := rest[:tagChars], rest[tagChars:]
	authentic := false
	for _, k := range c.keys {
		if hmac.Equal([]byte(c.tag(k, domain, body)), []byte(tag)) {
			authentic = true
			break
		}
	}
	if !authentic {
		return Address{}, ErrTampered
	}
	r := bitReader{s: body}
	day := int(r.read(dayBits))
	n := (len(body)*5 - dayBits) / symBits
	syms := make([]byte, n)
	for i := range syms {
		syms[i] = byte(r.read(symBits))
	}
	if r.read(len(body)*5-dayBits-n*symBits) != 0 {
		return Address{}, ErrTampered
	}
	text, err := unpack(syms)
	if err != nil {
		return Address{}, fmt.Errorf("%w: %w", ErrTampered, err)
	}
	aLocal, sender, ok := strings.Cut(text, "@")
	if !ok || aLocal == "" {
		return Address{}, fmt.Errorf("%w: no alias", ErrTampered)
	}
	if _, _, ok := split(sender); !ok {
		return Address{}, fmt.Errorf("%w: invalid sender", ErrTampered)
	}
	issued := time.Unix(int64(day)*86400, 0).UTC()
	today := epochDay(now)
	if day > today+1 || now.Sub(issued) > c.maxAge {
		return Address{}, ErrExpired
	}
	return Address{Alias: aLocal + "@" + strings.ToLower(domain), Sender: sender, Issued: issued}, nil
}

// tag is the base32 authentication tag of body on domain under key.
func (c *Codec) tag(key []byte, domain, body string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("mailrelay reply v1\x00"))
	m.Write([]byte(strings.ToLower(domain)))
	m.Write([]byte{0})
	m.Write([]byte(body))
	sum := m.Sum(nil)
	var w bitWriter
	for i := 0; i < 8; i++ {
		w.write(uint32(sum[i]), 8)
	}
	w.write(uint32(sum[8]>>7), 1)
	return w.base32()
}

// split cuts an address at its last '@'; both sides must be non-empty.
func split(a string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", "", false
	}
	return a[:at], a[at+1:], true
}

func epochDay(t time.Time) int {
	return int(t.Unix() / 86400)
}
