package rewrite

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/mailrelay/mailrelay/mailproc/failure"
)

// Header is the header block of a mail held in memory, read and split into
// fields once (Parse), for everything the relay does with it: the loop
// checks (Facts) and every copy (Rewrite, Reply). It refers to the mail's
// bytes, which must not change while it is in use; none of its methods
// modifies them. A Header is not safe for concurrent use.
type Header struct {
	st    state // st.hdr is raw's header block itself, not a copy; st.br is unused
	raw   []byte
	facts Facts
}

var headerPool = sync.Pool{New: func() any {
	return &Header{st: state{fields: make([]field, 0, 32), out: make([]byte, 0, 4096)}}
}}

// Parse splits the header block of the mail raw (the mail SES stored,
// whole). It accepts and refuses exactly what Rewrite and Examine do, with
// their errors: failure.Permanent(failure.ReasonMalformedMail) for a
// broken header block or one over 1 MiB. The header is not copied: the
// Header refers to raw. Release gives its buffers back once done.
func Parse(raw []byte) (*Header, error) {
	h := headerPool.Get().(*Header)
	if err := h.st.splitHeader(raw, maxHeaderBytes); err != nil {
		h.Release()
		if errors.Is(err, errHeaderTooLarge) {
			return nil, malformed("header block larger than %d bytes", maxHeaderBytes)
		}
		return nil, err
	}
	h.raw = raw
	h.facts = h.st.facts()
	return h, nil
}

// Release returns h's buffers for reuse; h must not be used afterwards.
func (h *Header) Release() {
	h.st.shrink()
	h.st.hdr, h.st.sep = nil, 0 // raw's, not a buffer of h's
	h.raw, h.facts = nil, Facts{}
	headerPool.Put(h)
}

// Facts returns what the header block says about where the mail comes
// from (see Facts and Examine).
func (h *Header) Facts() Facts { return h.facts }

// Rewrite writes the copy to forward to dst: the rewritten header block
// and the body of the mail as it is (one Write each). The copy is byte for
// byte what the package's Rewrite writes for the same mail and Params, with
// its Result; errors are Rewrite's, but for Params.MaxBytes, which is
// checked against the whole mail before anything is written (Parse has
// already refused a header block over 1 MiB as malformed). Rewrite may be
// called for as many copies as needed.
func (h *Header) Rewrite(dst io.Writer, p Params) (Result, error) {
	suffix, err := checkParams(p)
	if err != nil {
		return Result{}, err
	}
	if p.MaxBytes > 0 && int64(len(h.raw)) > p.MaxBytes {
		return Result{}, failure.Permanent(failure.ReasonMessageTooLarge, fmt.Errorf("message larger than %d bytes", p.MaxBytes))
	}
	var res Result
	st := &h.st
	st.out = st.edit(&res, p, suffix)
	n, err := dst.Write(st.out)
	res.HeaderBytes = int64(n)
	if err != nil {
		return res, fmt.Errorf("write header: %w", err)
	}
	n, err = dst.Write(h.raw[len(st.hdr):])
	res.BodyBytes = int64(n)
	if err != nil {
		return res, fmt.Errorf("copy body: %w", err)
	}
	return res, nil
}

// Reply writes the copy of a reply to dst, as the package's Reply does
// (byte for byte, same Result), the body read from the mail without being
// copied first. Params.MaxBytes is checked as in Header.Rewrite.
func (h *Header) Reply(dst io.Writer, p ReplyParams) (Result, error) {
	if err := checkReply(p); err != nil {
		return Result{}, err
	}
	if p.MaxBytes > 0 && int64(len(h.raw)) > p.MaxBytes {
		return Result{}, failure.Permanent(failure.ReasonMessageTooLarge, fmt.Errorf("message larger than %d bytes", p.MaxBytes))
	}
	return h.st.reply(dst, h.raw[len(h.st.hdr):], p)
}
