package inbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// The acknowledgement contract, error by error, as wrapped on the way up.
func TestStatusContract(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: x", errTooLarge), http.StatusRequestEntityTooLarge},
		{fmt.Errorf("%w: %w", errReadBody, errors.New("reset")), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: x", sns.ErrMalformed), http.StatusBadRequest},
		{fmt.Errorf("%w: x", sns.ErrUnknownType), http.StatusBadRequest},
		{errDraining, http.StatusServiceUnavailable},
		{fmt.Errorf("%w: x", errTopicNotAllowed), http.StatusForbidden},
		{fmt.Errorf("%w: x", sns.ErrCertURL), http.StatusForbidden},
		{fmt.Errorf("%w: x", sns.ErrSignature), http.StatusForbidden},
		{fmt.Errorf("%w: %w", sns.ErrCertFetch, context.DeadlineExceeded), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w: x", sns.ErrCertFetch, sns.ErrCertLimited), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: x", sns.ErrTimestamp), http.StatusForbidden},
		{fmt.Errorf("%w: x", sns.ErrSubscribeURL), http.StatusForbidden},
		{fmt.Errorf("%w: x", sns.ErrConfirm), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", errPut, spool.ErrFull), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", errPut, spool.ErrInvalidID), http.StatusBadRequest},
		{fmt.Errorf("%w: %w", errPut, errPutTimeout), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", errPut, errTooManyWrites), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", errPut, errors.New("disk")), http.StatusServiceUnavailable},
		{fmt.Errorf("%w: %w", errPut, context.Canceled), http.StatusServiceUnavailable},
		{errors.New("anything else"), http.StatusServiceUnavailable},
	} {
		if code, reason := status(tt.err); code != tt.code || reason == "" {
			t.Errorf("status(%v) = %d %q, want %d", tt.err, code, reason, tt.code)
		}
	}
}
