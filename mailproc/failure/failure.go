// Package failure classifies errors as transient (retry later) or permanent
// (retrying cannot help: dead-letter or drop). It is the one place where that
// decision is made; the edges (awsclient, parsers) wrap their errors with a
// class and a low-cardinality reason, and the pipeline asks this package.
package failure

import (
	"context"
	"errors"
	"fmt"
)

// Class is how an error should be handled.
type Class int

const (
	// ClassTransient: try again later (timeouts, throttling, 5xx, breaker open).
	ClassTransient Class = iota
	// ClassPermanent: the same input will always fail (malformed mail, 4xx).
	ClassPermanent
)

func (c Class) String() string {
	if c == ClassPermanent {
		return "permanent"
	}
	return "transient"
}

// Error carries a class and a short machine-readable reason (used as a metric
// label, so keep the set small: "s3_not_found", "malformed_mail", ...).
type Error struct {
	Class  Class
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent wraps err as a permanent failure with reason.
func Permanent(reason string, err error) error {
	return &Error{Class: ClassPermanent, Reason: reason, Err: err}
}

// Transient wraps err as a transient failure with reason.
func Transient(reason string, err error) error {
	return &Error{Class: ClassTransient, Reason: reason, Err: err}
}

// Permanentf is Permanent with a formatted error.
func Permanentf(reason, format string, args ...any) error {
	return Permanent(reason, fmt.Errorf(format, args...))
}

// ClassOf reports the class of err. Unclassified errors are transient: when
// in doubt we keep the message and try again rather than lose it.
func ClassOf(err error) Class {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Class
	}
	return ClassTransient
}

// IsPermanent reports whether err is classified permanent.
func IsPermanent(err error) bool { return err != nil && ClassOf(err) == ClassPermanent }

// ReasonOf returns the reason of the outermost classified error, or a generic
// one: "timeout" for deadline errors, "canceled", else "error".
func ReasonOf(err error) string {
	var fe *Error
	if errors.As(err, &fe) && fe.Reason != "" {
		return fe.Reason
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}
