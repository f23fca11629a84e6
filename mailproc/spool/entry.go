package spool

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrFull is returned by Put when the spool is at its message or byte
	// bound. Callers answer 503 so that SNS retries later.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrNotFound is returned for an id that is not in the expected state.
	ErrNotFound = errors.New("spool: not found")
	// ErrInvalidID is returned for an entry ID that is empty, longer than
	// MaxIDLength or contains a NUL byte. It is final: retrying cannot help.
	ErrInvalidID = errors.New("spool: invalid id")
	// ErrNoSpace is returned by Put while the free disk space is below the
	// reserve (Options.ReserveBytes) or a write found the disk full. It
	// wraps ErrFull: transient, callers answer 503 and SNS retries.
	ErrNoSpace = fmt.Errorf("%w: disk space below the reserve", ErrFull)
	// ErrStorage is wrapped by the errors of every write after pebble
	// reported a write error it cannot recover from: the spool fails
	// closed until the process restarts (see Options.OnFatal).
	ErrStorage = errors.New("spool: storage failed")
)

// Entry is one accepted notification.
type Entry struct {
	// ID is the SNS MessageId: the de-duplication key.
	ID string `json:"id"`
	// Kind is the SES notificationType: "Received", "Bounce", "Complaint"
	// (empty when the payload could not be recognised at intake).
	Kind string `json:"kind,omitempty"`
	// TopicARN is the SNS topic the notification came from.
	TopicARN string `json:"topic_arn,omitempty"`
	// Payload is the SNS Message field as received (the SES notification JSON).
	Payload []byte `json:"payload"`
	// EnqueuedAt is when the notification was accepted.
	EnqueuedAt time.Time `json:"enqueued_at"`
	// Attempts counts processing attempts that ended in a retry.
	Attempts int `json:"attempts,omitempty"`
	// NextAttempt is when the entry is next due (zero: now).
	NextAttempt time.Time `json:"next_attempt,omitempty"`
	// LastError is the reason of the last failed attempt.
	LastError string `json:"last_error,omitempty"`
	// Sent records destination sets already handed to SES (key chosen by
	// the processor) with the SES message id, so a retry or a restart never
	// sends the same copy twice.
	Sent map[string]string `json:"sent,omitempty"`
}

// DeadLetter is an entry that failed permanently, with why and when.
type DeadLetter struct {
	Entry
	Reason string    `json:"reason"`
	DeadAt time.Time `json:"dead_at"`
}

// Stats is a snapshot of the spool's size.
type Stats struct {
	Messages    int       // pending entries (queued, leased or waiting to retry)
	Bytes       int64     // payload bytes of pending entries
	DeadLetters int       // entries in the dead-letter store
	Oldest      time.Time // EnqueuedAt of the oldest pending entry (zero if none)

	DeadLetterBytes    int64     // payload bytes of dead letters
	OldestDeadLetter   time.Time // DeadAt of the oldest dead letter (zero if none)
	DeadLettersExpired uint64    // dead letters deleted by the bounds since Open
}
