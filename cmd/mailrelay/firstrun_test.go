package main

// The first ten minutes of a new user: the README's quick start as written,
// configuration mistakes reported at once and in user words, and Ctrl-C on
// `make run`.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// repoRoot is the repository root (tests run in cmd/mailrelay).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// quickStart returns the command lines of the README's "## Quick start"
// sh block, without their comments.
func quickStart(t *testing.T, readme string) []string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Quick start\n")
	if !ok {
		t.Fatal("README.md has no \"## Quick start\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("the quick start has no ```sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		l, _, _ = strings.Cut(l, "#")
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestReadmeQuickStart checks the quick start as written: the Go version is
// go.mod's, every make target exists, and every bin/mailrelay line names a
// real command whose --help lists each flag the line uses and whose files
// exist. Every mailrelay example in the README uses bin/mailrelay.
func TestReadmeQuickStart(t *testing.T) {
	root := repoRoot(t)
	readmeB, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(readmeB)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)
	if goVersion == nil || !strings.Contains(readme, "Go "+string(goVersion[1])) {
		t.Errorf("the README does not name go.mod's Go version %q as \"Go %s\"", goVersion, goVersion[1])
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}

	lines := quickStart(t, readme)
	if len(lines) < 3 || lines[0] != "make build" {
		t.Fatalf("the quick start should begin with make build, got %q", lines)
	}
	sawBin := false
	for _, line := range lines {
		words := strings.Fields(line)
		switch words[0] {
		case "make":
			for _, target := range words[1:] {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(target) + `:`).Match(makefile) {
					t.Errorf("%q: the Makefile has no target %s", line, target)
				}
			}
		case "bin/mailrelay":
			sawBin = true
			checkCommandLine(t, root, line, words[1:])
		default:
			t.Errorf("%q: the quick start runs only make and bin/mailrelay", line)
		}
	}
	if !sawBin {
		t.Error("the quick start never runs bin/mailrelay")
	}
	// Every command example is bin/mailrelay, the one `make build` makes.
	for _, m := range regexp.MustCompile("(?m)(^|[`(])((?:\\./)?[a-z/]*mailrelay) (serve|dev|deadletter|config|redrive-sns-dlq|reconcile)\\b").FindAllStringSubmatch(readme, -1) {
		if m[2] != "bin/mailrelay" {
			t.Errorf("README example %q: use bin/mailrelay (what make build makes)", strings.TrimSpace(m[0]))
		}
	}
}

// checkCommandLine runs `<command> --help` in-process for the longest run of
// command words and checks each flag and file of the line.
func checkCommandLine(t *testing.T, root, line string, args []string) {
	t.Helper()
	var cmd []string
	for _, a := range args {
		if !regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(a) {
			break
		}
		cmd = append(cmd, a)
	}
	if len(cmd) == 0 {
		t.Errorf("%q: no command", line)
		return
	}
	var help bytes.Buffer
	err := run(context.Background(), append(cmd, "--help"), &help, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("%q: `bin/mailrelay %s --help` is no command's help: %v", line, strings.Join(cmd, " "), err)
		return
	}
	for _, a := range args[len(cmd):] {
		switch {
		case strings.HasPrefix(a, "-"):
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if name == "help" {
				continue
			}
			if !strings.Contains(help.String(), "  -"+name+" ") && !strings.Contains(help.String(), "  -"+name+"\n") {
				t.Errorf("%q: --%s is not in `bin/mailrelay %s --help`", line, name, strings.Join(cmd, " "))
			}
		case strings.Contains(a, "/"):
			if _, err := os.Stat(filepath.Join(root, a)); err != nil {
				t.Errorf("%q: %v", line, err)
			}
		}
	}
}

// invoke runs the CLI as main does, in dir, and returns the exit code and
// what it printed.
func invoke(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Chdir(dir)
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	code = report(err, args, &errb)
	return code, out.String(), errb.String()
}

// listDir lists dir's entries (names), to see what a command created.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

const testTopic = "arn:aws:sns:us-east-1:123456789012:inbound"

const testAliases = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
`

// TestServeConfigErrors: every mistake is reported at once, one line each
// with the flag and variable, exit code 2 for usage mistakes (1 for the
// world being in the way), no usage dump, and nothing created on disk.
func TestServeConfigErrors(t *testing.T) {
	// No ambient settings: only what each case sets.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "RELAY_") || strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	free := []string{"--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		setup  func(t *testing.T, dir string) // files the case needs
		code   int
		want   []string // each must appear in stderr
		maxErr int      // lines of stderr at most
	}{
		{
			name: "nothing set: every missing setting at once",
			args: []string{"serve"},
			code: 2,
			want: []string{
				"--sns-topic-arns / RELAY_SNS_TOPIC_ARNS is required",
				"--aliases-file / RELAY_ALIASES_FILE: no alias file at",
				"AWS_REGION is not set",
				"Run 'mailrelay serve --help'",
			},
			maxErr: 6,
		},
		{
			name:   "duration without unit",
			args:   []string{"serve", "--retry-min", "2"},
			code:   2,
			want:   []string{"mailrelay: --retry-min 2: a duration needs a unit, e.g. 2s", "--help"},
			maxErr: 2,
		},
		{
			name:   "unknown flag: one line, no usage dump",
			args:   []string{"serve", "--nope"},
			code:   2,
			want:   []string{"mailrelay: unknown flag --nope\n", "Run 'mailrelay serve --help' for the flags."},
			maxErr: 2,
		},
		{
			name:   "bad variable",
			env:    map[string]string{"RELAY_WORKERS": "many", "RELAY_SNS_TOPIC_ARNS": testTopic, "AWS_REGION": "us-east-1"},
			args:   append([]string{"serve"}, free...),
			setup:  func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "aliases.yaml"), testAliases) },
			code:   2,
			want:   []string{"RELAY_WORKERS=many (--workers): not a whole number"},
			maxErr: 2,
		},
		{
			name:   "invalid alias file",
			env:    map[string]string{"RELAY_SNS_TOPIC_ARNS": testTopic, "AWS_REGION": "us-east-1"},
			args:   append([]string{"serve"}, free...),
			setup:  func(t *testing.T, dir string) { writeFile(t, filepath.Join(dir, "aliases.yaml"), "aliases: nope\n") },
			code:   1,
			want:   []string{"--aliases-file / RELAY_ALIASES_FILE: alias file aliases.yaml"},
			maxErr: 1,
		},
		{
			name: "port in use",
			env:  map[string]string{"RELAY_SNS_TOPIC_ARNS": testTopic, "AWS_REGION": "us-east-1"},
			args: []string{"serve", "--listen", busy.Addr().String(), "--health-listen", "127.0.0.1:0", "--admin-listen", ""},
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "aliases.yaml"), testAliases)
			},
			code:   1,
			want:   []string{"--listen / RELAY_LISTEN: " + busy.Addr().String() + " is in use", "lsof -i"},
			maxErr: 1,
		},
		{
			name: "another relay holds the spool",
			env:  map[string]string{"RELAY_SNS_TOPIC_ARNS": testTopic, "AWS_REGION": "us-east-1"},
			args: append([]string{"serve", "--spool-dir", "held"}, free...),
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "aliases.yaml"), testAliases)
				s, err := spool.Open(filepath.Join(dir, "held"), spool.Options{Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
			},
			code:   1,
			want:   []string{"--spool-dir / RELAY_SPOOL_DIR: another relay", "holds the spool held", "held/LOCK", "fuser held/LOCK"},
			maxErr: 1,
		},
		{
			name:   "deadletter list without a relay",
			args:   []string{"deadletter", "list", "--admin", "127.0.0.1:1"},
			code:   1,
			want:   []string{"nothing answers at http://127.0.0.1:1: is a relay running with its admin listener there?", "connection refused"},
			maxErr: 1,
		},
		{
			name:   "deadletter list has no --all",
			args:   []string{"deadletter", "list", "--all"},
			code:   2,
			want:   []string{"unknown flag --all", "Run 'mailrelay deadletter list --help'"},
			maxErr: 2,
		},
		{
			name:   "unknown command",
			args:   []string{"srve"},
			code:   2,
			want:   []string{`unknown command "srve"`},
			maxErr: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			before := listDir(t, dir)
			code, _, stderr := invoke(t, dir, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if n := strings.Count(stderr, "\n"); n > tc.maxErr+2 { // +2: the "N problems" header and the hint
				t.Errorf("stderr has %d lines, want at most %d:\n%s", n, tc.maxErr+2, stderr)
			}
			if strings.Contains(stderr, "-admin-listen") && !strings.Contains(strings.Join(tc.want, ""), "admin-listen") {
				t.Errorf("stderr dumps the usage:\n%s", stderr)
			}
			if after := listDir(t, dir); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Errorf("the failed command changed the directory: %q -> %q", before, after)
			}
		})
	}
}

// Help goes to stdout with exit code 0; deadletter list and redrive list
// their own flags.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want, not string
	}{
		{[]string{"serve", "--help"}, "-sns-topic-arns", ""},
		{[]string{"deadletter", "list", "--help"}, "  -limit", "-all"},
		{[]string{"deadletter", "redrive", "--help"}, "  -all", "-limit"},
		{[]string{"dev", "--help"}, "-no-sample", ""},
		{[]string{"dev", "send", "--help"}, "-control", ""},
		{[]string{"--help"}, "deadletter list", ""},
	} {
		code, stdout, stderr := invoke(t, t.TempDir(), tc.args...)
		if code != 0 || !strings.Contains(stdout, tc.want) || (tc.not != "" && strings.Contains(stdout, "  "+tc.not+" ")) || stderr != "" {
			t.Errorf("%q: code %d, stdout lacks %q or has %q:\n%s\nstderr: %s", tc.args, code, tc.want, tc.not, stdout, stderr)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServeLogs runs serve for real (loopback, free ports): the first load
// is "aliases loaded", a SIGHUP reload says what changed, and the shutdown
// log shows the grace period as 5s.
func TestServeLogs(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	writeFile(t, "aliases.yaml", testAliases)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--sns-topic-arns", testTopic, "--listen", "127.0.0.1:0",
			"--health-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--shutdown-timeout", "5s",
			"--log-format", "json"}, io.Discard, &logs)
	}()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(logs.String(), what) {
			select {
			case err := <-done:
				t.Fatalf("serve stopped: %v\n%s", err, logs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %q in 15s:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(`"msg":"mailrelay serving"`)
	if !strings.Contains(logs.String(), `"msg":"aliases loaded"`) || strings.Contains(logs.String(), "reload") {
		t.Errorf("the first load should be \"aliases loaded\":\n%s", logs.String())
	}
	writeFile(t, "aliases.yaml", `domains: [relay.example.com]
aliases:
  - address: news@relay.example.com
    forward_to: [alice@example.org]
  - address: "@relay.example.com"
    forward_to: [ops@example.org]
`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(`"msg":"aliases reloaded"`)
	if !strings.Contains(logs.String(), `"added":2,"removed":1,"total":2`) {
		t.Errorf("the reload log should count the change:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), `"msg":"aliases reloaded"`); n != 1 {
		t.Errorf("%d reload lines, want 1:\n%s", n, logs.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after a clean stop: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop in 15s")
	}
	if !strings.Contains(logs.String(), `"grace":"5s"`) {
		t.Errorf("the shutdown log should show the grace as 5s:\n%s", logs.String())
	}
}

// A dev run that fails (busy port) leaves no half-made directory, so the
// next run still pushes the sample.
func TestDevFailedStartLeavesNoDir(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	devDir := filepath.Join(dir, "dev")
	code, _, stderr := invoke(t, dir, "dev", "--dir", devDir, "--control", "127.0.0.1:0",
		"--listen", busy.Addr().String(), "--health-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(stderr, "address already in use") {
		t.Errorf("code %d, stderr %s", code, stderr)
	}
	if _, err := os.Stat(devDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed run left %s behind (%v)", devDir, err)
	}
}

// TestMakeRunCtrlC: Ctrl-C (SIGINT to the process group) on `make run`
// drains the playground, prints "stopped:", and make exits 0. It builds
// bin/mailrelay through make, so on a cold cache it takes minutes.
func TestMakeRunCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED (-short): TestMakeRunCtrlC builds the binary with make; run without -short to check Ctrl-C on make run")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("SKIPPED: no make on PATH")
	}
	root := repoRoot(t)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "mailrelay")
	loop := "127.0.0.1:0"
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "run", "BIN="+bin,
		"DEV_FLAGS=--dir "+filepath.Join(tmp, "dev")+" --control "+loop+" --listen "+loop+
			" --health-listen "+loop+" --admin-listen "+loop)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	defer syscall.Kill(-pgid, syscall.SIGKILL) // whatever happens, nothing stays behind
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	deadline := time.After(8 * time.Minute) // a cold build
	for !strings.Contains(out.String(), "Running; Ctrl-C stops.") {
		select {
		case err := <-waited:
			t.Fatalf("make run ended before running: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("make run did not come up in 8 minutes:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		// GNU make re-raises the SIGINT it got itself once its child has
		// ended (the shell shows 130, as for any interrupted make); what
		// it must not do is report the child failing ("Error 1") or
		// killed ("Interrupt"): the relay stopped cleanly with exit 0.
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
			t.Errorf("make run after Ctrl-C: %v (want exit 0, or make's own SIGINT)\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("make run did not stop within 30s of Ctrl-C:\n%s", out.String())
	}
	if !regexp.MustCompile(`(?m)^stopped: drained \d+`).MatchString(out.String()) {
		t.Errorf("no \"stopped:\" line:\n%s", out.String())
	}
	if strings.Contains(out.String(), "Error") || strings.Contains(out.String(), "Interrupt") {
		t.Errorf("make reported the relay failing:\n%s", out.String())
	}

	// The binary make built, alone: SIGINT -> "stopped:" and exit 0.
	direct := exec.Command(bin, "dev", "--dir", filepath.Join(tmp, "dev"), "--control", loop, "--listen", loop,
		"--health-listen", loop, "--admin-listen", loop)
	var dout syncBuffer
	direct.Stdout, direct.Stderr = &dout, &dout
	if err := direct.Start(); err != nil {
		t.Fatal(err)
	}
	defer direct.Process.Kill()
	dwaited := make(chan error, 1)
	go func() { dwaited <- direct.Wait() }()
	for !strings.Contains(dout.String(), "Running; Ctrl-C stops.") {
		select {
		case err := <-dwaited:
			t.Fatalf("%s dev ended before running: %v\n%s", bin, err, dout.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = direct.Process.Signal(syscall.SIGINT)
	select {
	case err := <-dwaited:
		if err != nil || !strings.Contains(dout.String(), "stopped: drained") {
			t.Errorf("mailrelay dev after SIGINT: %v (want exit 0 and a stopped line)\n%s", err, dout.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("mailrelay dev did not stop within 30s of SIGINT:\n%s", dout.String())
	}
}
