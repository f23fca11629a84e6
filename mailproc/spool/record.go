package spool

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key spaces. Each key is the prefix followed by the entry's ID.
const (
	prefixQueue  = "q/" // pending entry: JSON Entry
	prefixDead   = "d/" // dead-lettered entry: JSON DeadLetter
	prefixSeen   = "s/" // dedupe marker of a finished ID: expiry as decimal unix seconds
	prefixExpiry = "x/" // expiry index: 8-byte big-endian unix seconds, then the ID; empty value
)

// MaxIDLength is the longest ID accepted. SNS MessageIds are UUIDs (36 bytes).
const MaxIDLength = 256

// checkID validates an entry ID: non-empty, at most MaxIDLength bytes, no NUL.
func checkID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidID)
	case len(id) > MaxIDLength:
		return fmt.Errorf("%w: %d bytes, max %d", ErrInvalidID, len(id), MaxIDLength)
	case strings.IndexByte(id, 0) >= 0:
		return fmt.Errorf("%w: contains NUL", ErrInvalidID)
	}
	return nil
}

func dbKey(prefix, id string) []byte {
	k := make([]byte, 0, len(prefix)+len(id))
	k = append(k, prefix...)
	return append(k, id...)
}

// prefixEnd returns the smallest key greater than every key with prefix (all
// prefixes end in '/', so incrementing the last byte is enough).
func prefixEnd(prefix string) []byte {
	k := []byte(prefix)
	k[len(k)-1]++
	return k
}

func unixSeconds(t time.Time) uint64 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint64(s)
}

// expiryAt is when a marker written at now stops deduplicating: rounded up to
// whole seconds so it never expires early.
func expiryAt(now time.Time, ttl time.Duration) uint64 {
	t := now.Add(ttl)
	s := unixSeconds(t)
	if t.Nanosecond() != 0 && t.Unix() >= 0 {
		s++
	}
	return s
}

func encodeExpiry(exp uint64) []byte {
	return strconv.AppendUint(nil, exp, 10)
}

// parseExpiry parses a dedupe marker value.
func parseExpiry(v []byte) (uint64, error) {
	exp, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("dedupe marker: %w", err)
	}
	return exp, nil
}

func expiryKey(exp uint64, id string) []byte {
	k := make([]byte, 0, len(prefixExpiry)+8+len(id))
	k = append(k, prefixExpiry...)
	k = binary.BigEndian.AppendUint64(k, exp)
	return append(k, id...)
}

// parseExpiryKey splits an expiry index key into expiry and ID.
func parseExpiryKey(k []byte) (uint64, string, error) {
	if len(k) < len(prefixExpiry)+8 || string(k[:len(prefixExpiry)]) != prefixExpiry {
		return 0, "", fmt.Errorf("malformed expiry key %q", k)
	}
	rest := k[len(prefixExpiry):]
	return binary.BigEndian.Uint64(rest[:8]), string(rest[8:]), nil
}

// decodeEntry parses a stored pending entry.
func decodeEntry(v []byte) (Entry, error) {
	return decodeRecord(v, "entry", func(e Entry) string { return e.ID })
}

// decodeDeadLetter parses a stored dead letter.
func decodeDeadLetter(v []byte) (DeadLetter, error) {
	return decodeRecord(v, "dead letter", func(dl DeadLetter) string { return dl.ID })
}

// decodeRecord parses a stored JSON record named name and checks its ID.
func decodeRecord[R any](v []byte, name string, id func(R) string) (R, error) {
	var r, zero R
	if err := json.Unmarshal(v, &r); err != nil {
		return zero, fmt.Errorf("decoding %s: %w", name, err)
	}
	if err := checkID(id(r)); err != nil {
		return zero, fmt.Errorf("decoding %s: %w", name, err)
	}
	return r, nil
}
