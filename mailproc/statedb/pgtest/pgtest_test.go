package pgtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// query runs one statement returning one text value.
func query(t *testing.T, url, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var s string
	err = conn.QueryRow(ctx, sql).Scan(&s)
	return s, err
}

func TestSharedServerAndDatabases(t *testing.T) {
	url := pgtest.Start(t)
	if v, err := query(t, url, "SHOW server_version"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("server_version %s", v)
	}
	if v, err := query(t, url, "SHOW synchronous_commit"); err != nil || v != "on" {
		t.Fatalf("synchronous_commit = %q, %v; want on", v, err)
	}
	// Two fresh databases are distinct and isolated.
	a, b := pgtest.NewDatabase(t), pgtest.NewDatabase(t)
	if a == b {
		t.Fatalf("NewDatabase returned %s twice", a)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE only_a (v text)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if n, err := query(t, b, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'only_a'"); err != nil || n != "0" {
		t.Fatalf("table of database a seen in b: %q, %v", n, err)
	}
	if again := pgtest.Start(t); again != url {
		t.Fatalf("second Start = %s, want the shared %s", again, url)
	}
}

func TestPrivateStopRestart(t *testing.T) {
	s := pgtest.StartPrivate(t)
	url := s.NewDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('x')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	s.Stop(t)
	if _, err := query(t, url, "SELECT 'up'"); err == nil {
		t.Fatal("query succeeded on a stopped server")
	}
	s.Restart(t)
	if v, err := query(t, url, "SELECT v FROM kept"); err != nil || v != "x" {
		t.Fatalf("after restart: %q, %v; want the row kept", v, err)
	}
}
