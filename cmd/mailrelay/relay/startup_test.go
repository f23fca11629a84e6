package relay_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A start-up step that fails late (the admin address is taken, after the
// health and inbound listeners and the spool are up) makes Serve stop
// everything it started before returning the error: nothing answers on the
// earlier listeners, the spool can be opened again, and the relay starts
// on it once the address is free.
func TestLateStartupFailureStopsEverything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inboundAddr, healthAddr := freeAddr(t), freeAddr(t)
	env, err := relaytest.NewEnv(relaytest.Options{
		Dir:    t.TempDir(),
		Logger: relaytest.TestLogger(t),
		Args: append(append([]string(nil), relaytest.TestArgs...),
			"--listen", inboundAddr, "--health-listen", healthAddr, "--admin-listen", busy.Addr().String()),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Close(); err != nil {
			t.Errorf("relay exited with %v", err)
		}
	})
	ctx := context.Background()

	err = env.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "admin listener") {
		t.Fatalf("Start with the admin address taken: %v, want an admin listener error", err)
	}
	for what, addr := range map[string]string{"inbound": inboundAddr, "health": healthAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s listener %s still accepts connections after the failed start", what, addr)
		}
	}
	s, err := spool.Open(env.Config.SpoolDir, spool.Options{})
	if err != nil {
		t.Fatalf("spool still held after the failed start: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	busy.Close()
	if err := env.Start(ctx); err != nil {
		t.Fatalf("start once the admin address is free: %v", err)
	}
	if env.Relay.InboundAddr != inboundAddr || env.Relay.HealthAddr != healthAddr {
		t.Errorf("serving on %s and %s, want %s and %s", env.Relay.InboundAddr, env.Relay.HealthAddr, inboundAddr, healthAddr)
	}
	code, answer, err := env.Deliver(ctx, "after-restart", "ses-after-restart", testMail(1), "shop@relay.example.com")
	if err != nil || code != 200 {
		t.Fatalf("delivery after the restart: %d %q %v", code, answer, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := env.SES.WaitSent(sctx, 1); err != nil {
		t.Fatal(err)
	}
}
