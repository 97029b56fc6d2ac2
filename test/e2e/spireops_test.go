package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSPIRECLIOperations runs the real spire-server CLI's operator
// commands against treaty (logger, debug, upstreamauthority, bundle
// delete's modes) and checks they answer as treaty's own CLI does.
func TestSPIRECLIOperations(t *testing.T) {
	spire := spireServer(t)
	s := newServer(t, "alpha.test", "")
	s.start()
	spireCLI := func(args ...string) (string, string, error) {
		return runCmd(spire, append(args, "-socketPath", s.socket)...)
	}
	spireOK := func(args ...string) string {
		t.Helper()
		out, stderr, err := spireCLI(args...)
		require.NoError(t, err, "spire-server %v\nstdout: %s\nstderr: %s", args, out, stderr)
		return out
	}

	t.Run("logger", func(t *testing.T) {
		launched := spireOK("logger", "get")
		m := regexp.MustCompile(`^Logger Level : (\w+)\nLaunch Level : (\w+)\n\n$`).FindStringSubmatch(launched)
		require.NotNil(t, m, launched)
		require.Equal(t, m[1], m[2], "the server runs at its launch level")
		require.Equal(t, "Logger Level : warning\nLaunch Level : "+m[2]+"\n\n", spireOK("logger", "set", "-level", "warn"))
		require.Equal(t, spireOK("logger", "get"), s.treaty("logger", "get"))
		require.JSONEq(t, spireOK("logger", "get", "-output", "json"), s.treaty("logger", "get", "-output", "json"))
		require.Equal(t, launched, spireOK("logger", "reset"))
	})

	t.Run("debug getinfo", func(t *testing.T) {
		uptime := regexp.MustCompile(`(?m)^  Uptime: .*$`)
		theirs := spireOK("debug", "getinfo")
		require.Contains(t, theirs, "Registration Entries:    0\n")
		require.Contains(t, theirs, "Federated Bundles:       1\n")
		require.Equal(t, uptime.ReplaceAllString(theirs, ""), uptime.ReplaceAllString(s.treaty("debug", "getinfo"), ""))
	})

	t.Run("upstreamauthority without an upstream", func(t *testing.T) {
		for _, verb := range []string{"taint", "revoke"} {
			_, stderr, err := spireCLI("upstreamauthority", verb, "-subjectKeyID", "ab")
			require.Error(t, err)
			require.Contains(t, stderr, "upstream authority is not configured")
		}
	})

	t.Run("bundle delete modes", func(t *testing.T) {
		partner := newServer(t, "beta.test", "")
		partner.start()
		file := filepath.Join(t.TempDir(), "beta.json")
		require.NoError(t, os.WriteFile(file, []byte(partner.treaty("bundle", "show", "-format", "spiffe")), 0o600))
		spireOK("bundle", "set", "-id", "spiffe://beta.test", "-path", file, "-format", "spiffe")
		s.treaty("entry", "create", "-spiffeID", "spiffe://alpha.test/w", "-selector", "unix:uid:1", "-federatesWith", "spiffe://beta.test")

		_, stderr, err := spireCLI("bundle", "delete", "-id", "spiffe://beta.test")
		require.Error(t, err, "restrict, the default, refuses while an entry federates with the bundle")
		require.Contains(t, stderr, "1 registration entry federates with it")
		require.Contains(t, s.treaty("bundle", "count"), "2 bundles")

		require.Contains(t, spireOK("bundle", "delete", "-id", "spiffe://beta.test", "-mode", "dissociate"), "deleted")
		require.Contains(t, s.treaty("bundle", "count"), "1 bundle")
		require.NotContains(t, s.treaty("entry", "show", "-spiffeID", "spiffe://alpha.test/w"), "beta.test", "dissociate removed the federation")
	})
}
