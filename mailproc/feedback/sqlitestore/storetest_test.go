package sqlitestore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/storetest"
)

// The table tests every feedback.Store passes (the PostgreSQL one too).
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		path := filepath.Join(t.TempDir(), "state.db")
		return func(t *testing.T) feedback.Store {
			s, err := Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}
