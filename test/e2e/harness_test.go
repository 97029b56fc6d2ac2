// Package e2e runs the treaty binary as a user would: real processes, real
// unix sockets, a real SQLite file, and the real spire-server CLI. It builds
// the binary once and is skipped under -short.
package e2e

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/syncbuf"
)

// treatyBin is the binary built by TestMain.
var treatyBin string

// strict is set when TREATY_E2E=1: a missing external program is then a
// failure instead of a skip.
var strict = os.Getenv("TREATY_E2E") == "1"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		// Run no test, so that go test reports "[no tests to run]" for
		// the package rather than a pass.
		fmt.Println("e2e: every test skipped under -short: they build and run the treaty binary")
		if err := flag.Set("test.skip", "."); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "treaty-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	treatyBin = filepath.Join(dir, "treaty")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := build(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build treaty:", err)
		return 1
	}
	return m.Run()
}

// build builds treatyBin. With TREATY_COVERDIR set (make cover), the
// binary is built with coverage counters, and every treaty process the
// tests start, server or CLI, writes them there when it exits (a process
// killed with SIGKILL writes nothing).
func build(ctx context.Context) error {
	args := []string{"build", "-o", treatyBin}
	coverDir := os.Getenv("TREATY_COVERDIR")
	if coverDir != "" {
		args = append(args, "-cover", "-coverpkg=github.com/treatyhq/treaty/...")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/treaty")...)
	cmd.Dir = repoRoot()
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	if coverDir == "" {
		return nil
	}
	if err := os.MkdirAll(coverDir, 0o750); err != nil {
		return err
	}
	return os.Setenv("GOCOVERDIR", coverDir) // inherited by every process the tests start
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// server is one treaty server process.
type server struct {
	t       *testing.T
	td      string
	dataDir string
	socket  string
	// workload is the Workload API socket.
	workload string
	config   string
	args     []string // server command line; default: server run -config <config>
	env      []string // added to the process environment
	cmd      *exec.Cmd
	log      *syncBuffer
	exited   chan struct{}
}

// newServer prepares a server for trust domain td with a config file in a
// fresh directory. Socket paths live under a short /tmp directory because
// unix socket paths are limited to about 100 bytes.
func newServer(t *testing.T, td string, extraYAML string) *server {
	t.Helper()
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "treaty-e2e") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	s := &server{t: t, td: td, dataDir: filepath.Join(dir, "data"), socket: filepath.Join(sockDir, "admin.sock"),
		workload: filepath.Join(sockDir, "public", "workload.sock"), config: filepath.Join(dir, "treaty.yaml")}
	yaml := fmt.Sprintf("trust_domain: %s\ndata_dir: %s\nadmin_socket: %s\nworkload_socket: %s\nlog_level: debug\n%s",
		td, s.dataDir, s.socket, s.workload, extraYAML)
	require.NoError(t, os.WriteFile(s.config, []byte(yaml), 0o600))
	return s
}

// start launches the server and waits until its admin socket answers.
func (s *server) start() {
	s.t.Helper()
	args := s.args
	if args == nil {
		args = []string{"server", "run", "-config", s.config}
	}
	// The process outlives this call; stop and kill end it, and Cleanup
	// kills it when the test ends.
	s.cmd = exec.CommandContext(context.Background(), treatyBin, args...)
	s.cmd.Env = append(os.Environ(), s.env...)
	s.log = &syncBuffer{}
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	require.NoError(s.t, s.cmd.Start())
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	s.t.Cleanup(s.end)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := s.treatyErr("healthcheck")
		if err == nil {
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("server exited during start-up:\n%s", s.log)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server not healthy after 30s: %v\n%s", err, s.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	require.NoError(s.t, s.cmd.Process.Signal(os.Interrupt))
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.t.Fatalf("server did not stop within 15s:\n%s", s.log)
	}
	require.True(s.t, s.cmd.ProcessState.Success(), "server exit: %v\n%s", s.cmd.ProcessState, s.log)
}

// end ends the server when its test does: SIGKILL, or, when the binary
// counts coverage (make cover), SIGTERM first, since a killed process
// writes no coverage counters.
func (s *server) end() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	if os.Getenv("GOCOVERDIR") != "" && s.cmd.Process.Signal(os.Interrupt) == nil {
		select {
		case <-s.exited:
			return
		case <-time.After(15 * time.Second):
		}
	}
	s.kill()
}

// kill sends SIGKILL, as a crash would.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// treaty runs a CLI command against this server and requires success.
func (s *server) treaty(args ...string) string {
	s.t.Helper()
	out, stderr, err := s.treatyErr(args...)
	require.NoError(s.t, err, "treaty %s\nstdout: %s\nstderr: %s", strings.Join(args, " "), out, stderr)
	return out
}

// treatyErr runs a CLI command against this server (adding -socketPath).
func (s *server) treatyErr(args ...string) (string, string, error) {
	args = append(args, "-socketPath", s.socket)
	return runCmd(treatyBin, args...)
}

func runCmd(bin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// waitFor polls cond for at most 20 seconds.
func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond) // the server works asynchronously
	}
}

// syncBuffer is a buffer a logger or a process may write while the test reads it.
type syncBuffer = syncbuf.Buffer
