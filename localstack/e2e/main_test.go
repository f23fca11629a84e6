//go:build e2e

package e2e

import (
	"os"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/statedb/pgtest"
)

// TestMain stops the PostgreSQL server the tests with a shared database
// started (mailproc/statedb/pgtest).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
