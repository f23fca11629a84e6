// Package pgtest starts a real PostgreSQL server for tests: initdb and
// postgres (found on PATH or under /usr/lib/postgresql/*/bin) in a temporary
// directory, listening on 127.0.0.1 on a free port, its unix sockets in that
// directory, stopped when the test (or the test binary) is done.
//
// One shared server serves a whole test binary (Start, NewDatabase; stop it
// from TestMain with Main); a test that stops and restarts its server (an
// outage) starts its own with StartPrivate.
//
// initdb and postgres refuse to run as root: as root, both run as the user
// nobody, and the directory is handed to it.
//
// Without PostgreSQL installed a test skips with a loud message, unless
// MAILRELAY_REQUIRE_POSTGRES=1 (CI sets it): then it fails.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv names the environment variable that turns a missing
// PostgreSQL from a skip into a failure.
const RequireEnv = "MAILRELAY_REQUIRE_POSTGRES"

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 60 * time.Second

// FsyncEnv, set to "on", makes servers started afterwards fsync their WAL
// (the default is off: tests need no crash safety of the machine).
const FsyncEnv = "PGTEST_FSYNC"

// ErrNotInstalled is returned (wrapped) when no initdb/postgres is found.
var ErrNotInstalled = errors.New("pgtest: PostgreSQL (initdb, postgres) not installed")

// Server is one running (or stopped) PostgreSQL server owned by the test
// process.
type Server struct {
	bin  string // directory holding initdb and postgres
	dir  string // temporary directory: data/ and the unix sockets
	port int
	cred *syscall.Credential // nil unless running as root

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	logf *os.File
}

var (
	sharedMu  sync.Mutex
	shared    *Server
	sharedErr error
	dbSeq     atomic.Int64
)

// Main runs the tests and then stops the shared server, if one was started:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Without it the shared server dies with the test binary (parent-death
// signal) but its temporary directory stays behind.
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		shared.stop()
		_ = os.RemoveAll(shared.dir)
		shared = nil
	}
	return code
}

// Start returns the URL (database "postgres", superuser "postgres") of the
// test binary's shared server, starting it on first use. It skips or fails
// tb when PostgreSQL is not available (see the package comment).
func Start(tb testing.TB) string {
	tb.Helper()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared == nil && sharedErr == nil {
		shared, sharedErr = newServer()
	}
	if sharedErr != nil {
		unavailable(tb, sharedErr)
	}
	return shared.URL("postgres")
}

// NewDatabase creates a fresh, empty database on the shared server and
// returns its URL; the database is dropped when tb ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	Start(tb)
	return shared.NewDatabase(tb)
}

// StartPrivate starts a server for tb alone (one it may stop and restart),
// stopped and removed when tb ends.
func StartPrivate(tb testing.TB) *Server {
	tb.Helper()
	s, err := newServer()
	if err != nil {
		unavailable(tb, err)
	}
	tb.Cleanup(func() {
		s.stop()
		_ = os.RemoveAll(s.dir)
	})
	return s
}

// unavailable skips tb loudly, or fails it when RequireEnv is set.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv(RequireEnv) == "1" || !errors.Is(err, ErrNotInstalled) {
		tb.Fatalf("pgtest: cannot start PostgreSQL: %v", err)
	}
	msg := fmt.Sprintf("\n%s\n!!! SKIPPED: %v\n!!! Install PostgreSQL 15 (apt-get install postgresql) to run this test;\n!!! CI sets %s=1 and fails instead.\n%s",
		strings.Repeat("!", 72), err, RequireEnv, strings.Repeat("!", 72))
	fmt.Fprintln(os.Stderr, msg)
	tb.Skip(msg)
}

// URL returns the URL of database db on s.
func (s *Server) URL(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// NewDatabase creates a fresh database on s and returns its URL; it is
// dropped when tb ends (if the server runs then).
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	if err := s.exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return s.URL(name)
}

// exec runs one statement on the "postgres" database.
func (s *Server) exec(ctx context.Context, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Stop stops s (a fast shutdown: clients are disconnected); Restart starts
// it again on the same port with the same data.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	s.stop()
}

// Restart starts a stopped server again on the same port and data.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.run(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
}

// findBin returns the directory holding initdb and postgres: PATH first,
// then the newest /usr/lib/postgresql/*/bin.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

// version extracts N from /usr/lib/postgresql/N/bin.
func version(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// newServer runs initdb and starts postgres.
func newServer() (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		cred, err := nobody()
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		s.cred = cred
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	initdb := s.command("initdb", "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// A free port can be taken between our probe and postgres' bind: retry.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err == nil {
			if err = s.run(); err == nil {
				return s, nil
			}
		}
		if attempt == 2 {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

// nobody returns the credential of the unprivileged user postgres runs as
// when the tests run as root.
func nobody() (*syscall.Credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root and no user nobody to run PostgreSQL as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// command returns a command for one of the PostgreSQL binaries, run as
// s.cred when set, killed if the test process dies.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// freePort returns a TCP port on 127.0.0.1 free at the time of the call.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts postgres on s.port and waits until it accepts connections.
func (s *Server) run() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("pgtest: server already running")
	}
	logPath := filepath.Join(s.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	// Test servers trade crash safety of the machine for speed; the
	// relay's commit semantics (synchronous_commit) are unchanged.
	// Benchmarks set FsyncEnv=on to pay for durability like production.
	fsync := "off"
	if os.Getenv(FsyncEnv) == "on" {
		fsync = "on"
	}
	cmd := s.command("postgres", "-D", filepath.Join(s.dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-p", strconv.Itoa(s.port),
		"-c", "unix_socket_directories="+s.dir,
		"-c", "max_connections=200",
		"-c", "synchronous_commit=on",
		"-c", "fsync="+fsync,
		"-c", "full_page_writes="+fsync,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done, s.logf = cmd, done, logf

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			s.cmd = nil
			logf.Close()
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("postgres exited at start-up:\n%s", tail(out))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stopLocked()
	return fmt.Errorf("postgres did not accept connections within %v", startTimeout)
}

// stop ends the server: SIGINT (fast shutdown), SIGKILL after 20 s.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.logf.Close()
	s.cmd = nil
}

// tail returns the last lines of a log for an error message.
func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
