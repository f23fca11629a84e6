package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// mailrelay migrate applies the schema on a real PostgreSQL, says which
// version it reached, is a no-op the second time, and refuses to run
// without a database URL or against one that does not answer.
func TestMigrateCommand(t *testing.T) {
	url := pgtest.NewDatabase(t)
	t.Setenv(config.EnvName("database-url"), "")
	var versions []string
	for range 2 {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{"migrate", "--database-url", url}, &stdout, &stderr); err != nil {
			t.Fatalf("migrate: %v\n%s", err, stderr.String())
		}
		m := regexp.MustCompile(`^database schema at version (\d+)\n$`).FindStringSubmatch(stdout.String())
		if m == nil || m[1] == "0" {
			t.Fatalf("migrate printed %q", stdout.String())
		}
		versions = append(versions, m[1])
	}
	if versions[0] != versions[1] {
		t.Errorf("versions %v: a second run changed the schema", versions)
	}

	var ue *config.UsageError
	if err := run(context.Background(), []string{"migrate"}, new(bytes.Buffer), new(bytes.Buffer)); !errors.As(err, &ue) {
		t.Errorf("migrate without a URL: %v, want a usage error (exit 2)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	if err := run(ctx, []string{"migrate", "--database-url", "postgres://nobody@127.0.0.1:1/none"}, new(bytes.Buffer), new(bytes.Buffer)); err == nil {
		t.Error("migrate against nothing succeeded")
	}
}
