package cli

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/server"
)

// startServer runs a real server in-process and returns its admin socket.
func startServer(t *testing.T, td string) string {
	t.Helper()
	socket, _ := startServerWithWorkload(t, td)
	return socket
}

// startServerWithWorkload runs a real server in-process and returns its
// admin and Workload API sockets.
func startServerWithWorkload(t *testing.T, td string) (string, string) {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "treaty-cli") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "admin.sock")
	workload := filepath.Join(sockDir, "public", "workload.sock")
	startWith(t, config.Overrides{TrustDomain: td, DataDir: t.TempDir(), AdminSocket: socket, WorkloadSocket: workload}, nil)
	return socket, workload
}

// startWith runs a server built from o, adjusted by edit, and returns its
// admin socket.
func startWith(t *testing.T, o config.Overrides, edit func(*config.Config)) string {
	t.Helper()
	cfg, err := config.Build("", o)
	require.NoError(t, err)
	if edit != nil {
		edit(cfg)
	}
	srv, err := server.New(t.Context(), cfg, nil, server.WithLogLevel(new(slog.LevelVar)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return o.AdminSocket
}

func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return stdout.String(), stderr.String(), code
}

func TestCommands(t *testing.T) {
	socket := startServer(t, "alpha.test")
	partner := startServer(t, "beta.test")
	partnerDoc, _, code := run(t, "", "bundle", "show", "-format", "spiffe", "-socketPath", partner)
	require.Zero(t, code)

	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "ok/health", args: []string{"healthcheck"}, stdout: "Server is healthy.\n"},
		{name: "ok/count", args: []string{"bundle", "count"}, stdout: "1 bundle\n"},
		{name: "ok/count json", args: []string{"bundle", "count", "-output", "json"}, stdout: `{"count":1}`},
		{name: "ok/show pem", args: []string{"bundle", "show"}, stdout: "-----BEGIN CERTIFICATE-----"},
		{name: "ok/show json", args: []string{"bundle", "show", "-output", "json"}, stdout: `"trust_domain":"alpha.test"`},
		{name: "ok/set from stdin", stdin: partnerDoc, args: []string{"bundle", "set", "-id", "spiffe://beta.test", "-format", "spiffe"}, stdout: "bundle set.\n"},
		{name: "ok/list", args: []string{"bundle", "list", "-format", "spiffe"}, stdout: "* beta.test\n"},
		{name: "ok/x509 show", args: []string{"localauthority", "x509", "show"}, stdout: "Upstream authority ID: No upstream authority\n\nPrepared X.509 authority:\n  No prepared X.509 authority found\n\nOld X.509"},
		{name: "ok/jwt show json", args: []string{"localauthority", "jwt", "show", "-output", "json"}, stdout: `"authority_id":`},
		{name: "fail/unknown command", args: []string{"bundle", "frobnicate"}, code: 2, stderr: `unknown command "bundle frobnicate"`},
		{name: "fail/set without id", args: []string{"bundle", "set"}, code: 2, stderr: "-id is required"},
		{name: "fail/bad format", args: []string{"bundle", "show", "-format", "der"}, code: 2, stderr: `-format "der": use pem or spiffe`},
		{name: "fail/activate without id", args: []string{"localauthority", "x509", "activate"}, code: 2, stderr: "-authorityID is required"},
		{name: "fail/stray argument", args: []string{"bundle", "show", "pem"}, code: 2, stderr: `unexpected argument "pem"`},
		{name: "fail/activate nothing prepared", args: []string{"localauthority", "jwt", "activate", "-authorityID", "x"}, code: 1, stderr: "no JWT authority is prepared"},
		{name: "fail/set garbage", stdin: "<html>", args: []string{"bundle", "set", "-id", "spiffe://beta.test", "-format", "spiffe"}, code: 1, stderr: "looks like an HTML page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if len(args) > 0 && args[0] != "version" {
				args = append(args, "-socketPath", socket)
			}
			stdout, stderr, code := run(t, tt.stdin, args...)
			require.Equal(t, tt.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Contains(t, stdout, tt.stdout)
			require.Contains(t, stderr, tt.stderr)
		})
	}

	stored, _, code := run(t, "", "bundle", "list", "-id", "spiffe://beta.test", "-format", "spiffe", "-socketPath", socket)
	require.Zero(t, code)
	td := spiffeid.RequireTrustDomainFromString("beta.test")
	a, err := spiffebundle.Parse(td, []byte(stored))
	require.NoError(t, err)
	b, err := spiffebundle.Parse(td, []byte(partnerDoc))
	require.NoError(t, err)
	require.True(t, a.Equal(b))
}

func TestUnreachableServer(t *testing.T) {
	_, stderr, code := run(t, "", "bundle", "show", "-socketPath", filepath.Join(t.TempDir(), "none.sock"))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "cannot reach a treaty server")
	require.Contains(t, stderr, "treaty server run")
}

func TestHelp(t *testing.T) {
	_, stderr, code := run(t, "")
	require.Zero(t, code)
	require.Contains(t, stderr, "localauthority x509 prepare")
	_, stderr, code = run(t, "", "bundle", "show", "-h")
	require.Zero(t, code)
	require.Contains(t, stderr, "-socketPath")
	stdout, _, code := run(t, "", "version")
	require.Zero(t, code)
	require.Equal(t, "treaty dev\n", stdout)
}

// TestVersionFlags: -version and --version are spellings of the version
// command; another flag in the command's place says so and lists them all.
func TestVersionFlags(t *testing.T) {
	for _, arg := range []string{"version", "-version", "--version"} {
		t.Run("ok/"+arg, func(t *testing.T) {
			stdout, stderr, code := run(t, "", arg)
			require.Zero(t, code, stderr)
			require.Equal(t, "treaty dev\n", stdout)
		})
	}
	_, stderr, code := run(t, "", "-frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `treaty: unknown flag "-frobnicate"; a command comes first, e.g. treaty bundle show -socketPath PATH`)
	require.Contains(t, stderr, "localauthority x509 prepare", "the whole command list")
	_, stderr, code = run(t, "", "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "localauthority x509 prepare", "no command starts like that: the whole list")
}

func TestProbeCommand(t *testing.T) {
	stdout, stderr, code := run(t, "", "probe", "https://127.0.0.1:1/", "-output", "json")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stdout, `"verdict": "fail"`, "flags after the URL are parsed")
	require.Contains(t, stderr, "would not work for federation")
	_, stderr, code = run(t, "", "probe")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "the endpoint URL")
	stdout, _, _ = run(t, "", "probe", "-insecure", "https://127.0.0.1:1/")
	require.Contains(t, stdout, "FAIL tcp")
}
