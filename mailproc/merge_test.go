package mailproc

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/spool"
)

func TestMergedRoutesToSource(t *testing.T) {
	open := func() *spool.Spool {
		s, err := spool.Open(t.TempDir(), spool.Options{ReserveBytes: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	ctx := context.Background()
	for _, p := range []struct {
		s  *spool.Spool
		id string
	}{{a, "a1"}, {a, "a2"}, {b, "b1"}} {
		if _, err := p.s.Put(ctx, spool.Entry{ID: p.id, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	m := Merge(ctx, nil, a, b)
	got := map[string]bool{}
	for range 3 {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		e, err := m.Next(nctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got[e.ID] = true
		switch e.ID {
		case "a1", "b1":
			if err := m.Complete(e.ID); err != nil {
				t.Fatal(err)
			}
		case "a2":
			if err := m.DeadLetter(e.ID, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(got) != 3 {
		t.Fatalf("got %v", got)
	}
	if err := m.Complete("a1"); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("settled twice: %v", err)
	}
	m.Close()
	if st := a.Stats(); st.Messages != 0 || st.DeadLetters != 1 {
		t.Fatalf("a: %+v", st)
	}
	if st := b.Stats(); st.Messages != 0 {
		t.Fatalf("b: %+v", st)
	}
}
