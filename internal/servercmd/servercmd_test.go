package servercmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/cli"
)

func run(ctx context.Context, args ...string) (string, string, int) {
	var stdout, stderr bytes.Buffer
	code := cli.Main(ctx, args, strings.NewReader(""), &stdout, &stderr, Commands()...)
	return stdout.String(), stderr.String(), code
}

func TestCommandLine(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"ok/listed in the usage", nil, 0, "server run"},
		{"ok/help", []string{"server", "run", "-h"}, 0, "-trustDomain"},
		{"fail/unknown flag", []string{"server", "run", "-nope"}, 2, "Run 'treaty server run -h'"},
		{"fail/positional argument", []string{"server", "run", "extra"}, 2, `unexpected argument "extra"`},
		{"fail/bad trust domain", []string{"server", "run", "-trustDomain", "Not A Domain"}, 1, "not a valid trust domain"},
		{"fail/demo output", []string{"demo", "-output", "xml"}, 2, `-output "xml": use pretty or json`},
		{"fail/demo port", []string{"demo", "-betaPort", "70000"}, 2, "-betaPort 70000: use a port from 1 to 65535"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := run(t.Context(), tc.args...)
			require.Equal(t, tc.code, code, stderr)
			require.Contains(t, stderr, tc.stderr)
		})
	}
}

// TestServerRun runs `treaty server run` until its context ends, asking
// it over its admin socket, as an operator would, whether it serves.
func TestServerRun(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "treaty-run") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	admin := filepath.Join(sockDir, "admin.sock")

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		_, _, code := run(ctx, "server", "run", "-trustDomain", "example.org", "-dataDir", t.TempDir(),
			"-socketPath", admin, "-workloadSocket", filepath.Join(sockDir, "public", "workload.sock"))
		done <- code
	}()
	require.Eventually(t, func() bool {
		_, _, code := run(t.Context(), "healthcheck", "-socketPath", admin)
		return code == 0
	}, 30*time.Second, 50*time.Millisecond)
	cancel()
	require.Zero(t, <-done)
}
