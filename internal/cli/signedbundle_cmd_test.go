package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/adminwire"
)

func TestSignedBundleCommands(t *testing.T) {
	alpha := startServer(t, "alpha.test")
	beta := startServer(t, "beta.test")

	sign := func() (string, adminwire.SignBundleResponse) {
		t.Helper()
		out, stderr, code := run(t, "", "bundle", "show", "-socketPath", alpha, "-format", "spiffe", "-sign")
		require.Zero(t, code, stderr)
		require.Contains(t, stderr, "treaty bundle set -verify")
		js, stderr, code := run(t, "", "bundle", "show", "-socketPath", alpha, "-format", "spiffe", "-sign", "-output", "json")
		require.Zero(t, code, stderr)
		var resp adminwire.SignBundleResponse
		require.NoError(t, json.Unmarshal([]byte(js), &resp))
		return out, resp
	}
	set := func(file string, args ...string) (string, string, int) {
		return run(t, file, append([]string{"bundle", "set", "-socketPath", beta, "-verify"}, args...)...)
	}

	first, resp := sign()
	_, stderr, code := set(first)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no bundle held to verify with")
	_, stderr, code = set(first, "-pinSHA256", strings.Repeat("ab", 32))
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "is not the pinned")
	out, stderr, code := set(first, "-pinSHA256", resp.Fingerprint, "-id", "spiffe://alpha.test")
	require.Zero(t, code, stderr)
	require.Contains(t, out, "bundle set: alpha.test sequence")
	out, stderr, code = set(first)
	require.Zero(t, code, stderr)
	require.Contains(t, out, "bundle unchanged")

	_, stderr, code = run(t, "", "localauthority", "jwt", "prepare", "-socketPath", alpha)
	require.Zero(t, code, stderr)
	second, _ := sign()
	out, stderr, code = set(second)
	require.Zero(t, code, stderr)
	require.Contains(t, out, "bundle set")

	_, stderr, code = set(first)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "a replayed or rolled-back file")
	tampered := strings.Replace(second, `"spiffe_refresh_hint":`, `"spiffe_refresh_hint":1`, 1)
	_, stderr, code = set(tampered)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not signed by a JWT authority of the bundle held")
	_, stderr, code = set(second, "-id", "spiffe://gamma.test")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "is signed for alpha.test")

	_, stderr, code = run(t, "", "bundle", "show", "-socketPath", alpha, "-sign")
	require.Equal(t, 2, code, stderr)
}
