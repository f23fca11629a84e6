package statedb

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Classify marks err transient or permanent (failure.ReasonDatabase).
// Transient: the database cannot be reached or answer now — connection
// failures, timeouts, a server shutting down or starting, too many
// connections, serialization failures and deadlocks (retrying helps).
// Permanent: any other error the server reported about the statement
// itself (constraint, syntax, data). Unknown errors are transient: when in
// doubt, keep the message and try again.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var fe *failure.Error
	if errors.As(err, &fe) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !transientCode(pe.Code) {
		return failure.Permanent(failure.ReasonDatabase, err)
	}
	return failure.Transient(failure.ReasonDatabase, err)
}

// transientCode reports SQLSTATEs that say "not now" rather than "never":
// classes 08 (connection), 53 (insufficient resources), 57 (operator
// intervention: shutdown, cannot connect now), 58 (system error), and
// 40001/40P01 (serialization failure, deadlock).
func transientCode(code string) bool {
	switch {
	case code == "40001", code == "40P01":
		return true
	case len(code) == 5:
		switch code[:2] {
		case "08", "53", "57", "58":
			return true
		}
	}
	return false
}

// outcome maps a call's error to the outcome label.
func outcome(err error) string {
	switch {
	case err == nil:
		return telemetry.OutcomeOK
	case isTimeout(err):
		return telemetry.OutcomeTimeout
	}
	return telemetry.OutcomeError
}

// isTimeout reports a deadline or a network timeout anywhere in err.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	// pgconn's connect errors flatten the cause into text.
	return strings.Contains(err.Error(), "timeout")
}
