package mailproc

import (
	"bytes"
	"math/bits"
	"sync"
)

// Rewrite buffers are pooled by size class (powers of four from 64 KiB to
// 64 MiB), so that a worker forwarding large mails reuses a buffer of the
// right size instead of allocating, and growing by doubling, one per
// mail: allocations per mail stay flat in the mail's size. sync.Pool
// drops idle buffers at garbage collections, so a burst of large mails
// does not pin memory afterwards; while they flow, the byte budget
// (InFlightBytes) bounds how many are in use.
const (
	minBufClass = 16 // 64 KiB
	bufClasses  = 6  // ... 64 MiB; larger buffers are not pooled
)

var bufPools [bufClasses]sync.Pool

// bufClass is the class whose buffers hold n bytes, or -1 for larger.
func bufClass(n int) int {
	c := 0
	if n > 1<<minBufClass {
		c = (bits.Len(uint(n-1)) - minBufClass + 1) / 2
	}
	if c >= bufClasses {
		return -1
	}
	return c
}

// getBuf returns an empty buffer with room for n bytes.
func getBuf(n int) *bytes.Buffer {
	c := bufClass(n)
	if c < 0 {
		return bytes.NewBuffer(make([]byte, 0, n))
	}
	if b, ok := bufPools[c].Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return bytes.NewBuffer(make([]byte, 0, 1<<(minBufClass+2*c)))
}

// putBuf gives b back to the class its capacity serves (a buffer that grew
// beyond its class moves up; one smaller than the smallest is dropped).
func putBuf(b *bytes.Buffer) {
	n := b.Cap()
	if n < 1<<minBufClass {
		return
	}
	c := bufClass(n)
	if c < 0 {
		return
	}
	if n < 1<<(minBufClass+2*c) { // not a full buffer of its class
		c--
	}
	if c >= 0 {
		bufPools[c].Put(b)
	}
}
