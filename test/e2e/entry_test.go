package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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

// TestMintWithSPIRECLI mints SVIDs from treaty with the real spire-server
// CLI, as an existing device-provisioning script would.
func TestMintWithSPIRECLI(t *testing.T) {
	spire := spireServer(t)
	s := newServer(t, "alpha.test", "")
	s.start()
	dir := t.TempDir()
	out, stderr, err := runCmd(spire, "x509", "mint", "-spiffeID", "spiffe://alpha.test/device/1", "-ttl", "1h", "-write", dir, "-socketPath", s.socket)
	require.NoError(t, err, "%s\n%s", out, stderr)
	require.Contains(t, out, "X509-SVID written to")
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	require.NoError(t, err)
	bundle := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
	_, _, err = x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(bundle.TrustDomain(), bundle.X509Authorities()))
	require.NoError(t, err)

	out, stderr, err = runCmd(spire, "jwt", "mint", "-spiffeID", "spiffe://alpha.test/device/1", "-audience", "partner", "-socketPath", s.socket)
	require.NoError(t, err, "%s\n%s", out, stderr)
	token, err := jwtsvid.ParseAndValidate(strings.TrimSpace(out), jwtbundle.FromJWTAuthorities(bundle.TrustDomain(), bundle.JWTAuthorities()), []string{"partner"})
	require.NoError(t, err)
	require.Equal(t, "spiffe://alpha.test/device/1", token.ID.String())

	_, stderr, err = runCmd(spire, "x509", "mint", "-spiffeID", "spiffe://beta.test/device/1", "-socketPath", s.socket)
	require.Error(t, err)
	require.Contains(t, stderr, "not in this server's trust domain")
}
