package cli

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEarlyActivationWarns: activating an authority minutes after it was
// prepared says, on the CLI and not only in the server log, that partners
// will reject what it signs until they refresh.
func TestEarlyActivationWarns(t *testing.T) {
	socket := startServer(t, "alpha.test")
	for _, kind := range []string{"x509", "jwt"} {
		t.Run("warn/"+kind, func(t *testing.T) {
			out, stderr, code := run(t, "", "localauthority", kind, "prepare", "-socketPath", socket)
			require.Zero(t, code, stderr)
			id := regexp.MustCompile(`Authority ID: (\S+)`).FindStringSubmatch(out)
			require.NotNil(t, id, out)
			out, stderr, code = run(t, "", "localauthority", kind, "activate", "-socketPath", socket, "-authorityID", id[1])
			require.Zero(t, code, stderr)
			require.Contains(t, out, "Activated")
			require.Regexp(t, `^warning: the authority was published only \S+ ago; partners polling every \S+ may not have it yet and will reject SVIDs it signs until they refresh`, stderr)
		})
	}
}
