package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEntryCLIInterop drives treaty's Entry API with the real spire-server
// CLI and checks that treaty's own CLI prints the same.
func TestEntryCLIInterop(t *testing.T) {
	spire := spireServer(t)
	s := newServer(t, "alpha.test", "")
	s.start()
	spireCmd := func(args ...string) (string, string, error) {
		return runCmd(spire, append(args, "-socketPath", s.socket)...)
	}

	out, stderr, err := spireCmd("entry", "create", "-parentID", "spiffe://alpha.test/spire/server", "-spiffeID", "spiffe://alpha.test/svc/api",
		"-selector", "unix:uid:1000", "-selector", "unix:gid:1000", "-federatesWith", "spiffe://beta.test", "-dns", "api.alpha.test",
		"-x509SVIDTTL", "600", "-jwtSVIDTTL", "60", "-hint", "api", "-entryExpiry", "1900000000")
	require.NoError(t, err, "%s\n%s", out, stderr)
	id := regexp.MustCompile(`Entry ID\s+: (\S+)`).FindStringSubmatch(out)[1]

	for _, args := range [][]string{
		{"entry", "show"},
		{"entry", "show", "-entryID", id},
		{"entry", "show", "-selector", "unix:uid:1000"},
		{"entry", "show", "-federatesWith", "spiffe://beta.test", "-output", "json"},
		{"entry", "count"},
		{"entry", "count", "-output", "json"},
	} {
		want, stderr, err := spireCmd(args...)
		require.NoError(t, err, "spire-server %s: %s", strings.Join(args, " "), stderr)
		require.Equal(t, want, s.treaty(args...), "treaty %s prints what spire-server prints", strings.Join(args, " "))
	}

	out, stderr, err = spireCmd("entry", "update", "-entryID", id, "-parentID", "spiffe://alpha.test/spire/server",
		"-spiffeID", "spiffe://alpha.test/svc/api", "-selector", "unix:uid:1001")
	require.NoError(t, err, "%s\n%s", out, stderr)
	require.Contains(t, out, "Revision                : 1")
	require.Contains(t, s.treaty("entry", "show", "-entryID", id), "Selector                : unix:uid:1001")

	// spire-server's own duplicate and validation errors come back as SPIRE's CLI expects.
	_, stderr, err = spireCmd("entry", "create", "-parentID", "spiffe://alpha.test/spire/server", "-spiffeID", "spiffe://alpha.test/svc/api",
		"-selector", "unix:uid:1001")
	require.Error(t, err)
	require.Contains(t, stderr, "AlreadyExists")

	out, stderr, err = spireCmd("entry", "delete", "-entryID", id)
	require.NoError(t, err, "%s\n%s", out, stderr)
	require.Equal(t, "0 registration entries\n", s.treaty("entry", "count"))
}
