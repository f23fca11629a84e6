package sqlitestore

import (
	"context"
	"path/filepath"
	"testing"
)

// The behaviour every feedback.Store must have is tested by storetest
// (storetest_test.go); what is SQLite's own is tested here.

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// The migrations keep their own version table, next to others'.
func TestVersionTable(t *testing.T) {
	s, _ := open(t)
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM ` + VersionTable).Scan(&n); err != nil || n < 2 {
		t.Errorf("%s: %d rows, %v", VersionTable, n, err)
	}
	if err := s.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'goose_db_version'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("goose's default table exists (%d, %v)", n, err)
	}
}
