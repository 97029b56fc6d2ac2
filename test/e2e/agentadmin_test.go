package e2e

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSPIRECLIAgentAdmin drives the Agent API on treaty's admin socket with
// the real spire-server CLI and checks that treaty's CLI prints the same.
// No agent can attest to treaty yet, so the agent lists are empty; join
// tokens and their alias entries are real.
func TestSPIRECLIAgentAdmin(t *testing.T) {
	spire := spireServer(t)
	s := newServer(t, "alpha.test", "")
	s.start()
	spireCLI := func(t *testing.T, args ...string) string {
		t.Helper()
		out, stderr, err := runCmd(spire, append(args, "-socketPath", s.socket)...)
		require.NoError(t, err, "spire-server %v\nstdout: %s\nstderr: %s", args, out, stderr)
		return out
	}
	same := func(t *testing.T, want string, args ...string) {
		t.Helper()
		theirs := spireCLI(t, args...)
		require.Equal(t, want, theirs, "spire-server %v", args)
		require.Equal(t, theirs, s.treaty(args...), "treaty prints what spire-server prints for %v", args)
	}

	t.Run("agent list and count, empty", func(t *testing.T) {
		same(t, "No attested agents found\n", "agent", "list")
		same(t, "No attested agents found\n", "agent", "list", "-attestationType", "join_token", "-selector", "x509pop:ca:1", "-matchSelectorsOn", "any")
		same(t, "0 attested agents\n", "agent", "count")
		same(t, "0 attested agents\n", "agent", "count", "-banned", "true", "-expiresBefore", "2030-01-02 03:04:05 +0000 +00")
		same(t, "{\"agents\":[],\"next_page_token\":\"\"}\n", "agent", "list", "-output", "json")
		same(t, "{\"count\":0}\n", "agent", "count", "-output", "json")
		same(t, "No agents to purge.\n", "agent", "purge", "-dryRun")
	})

	uuid := `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	t.Run("token generate", func(t *testing.T) {
		require.Regexp(t, "^Token: "+uuid+"\nWarning: Missing SPIFFE ID.\n$", spireCLI(t, "token", "generate"))
		require.Regexp(t, "^Token: "+uuid+"\nWarning: Missing SPIFFE ID.\n$", s.treaty("token", "generate"))
		require.Regexp(t, `^\{"expires_at":"\d+","value":"`+uuid+`"\}`+"\n$", spireCLI(t, "token", "generate", "-ttl", "60", "-output", "json"))
		require.Regexp(t, `^\{"expires_at":"\d+","value":"`+uuid+`"\}`+"\n$", s.treaty("token", "generate", "-ttl", "60", "-output", "json"))
	})

	t.Run("token generate with a SPIFFE ID makes the alias entry", func(t *testing.T) {
		out := spireCLI(t, "token", "generate", "-spiffeID", "spiffe://alpha.test/node/spire")
		m := regexp.MustCompile("^Token: (" + uuid + ")\n$").FindStringSubmatch(out)
		require.NotNil(t, m, out)
		parent := "spiffe://alpha.test/spire/agent/join_token/" + m[1]
		show := []string{"entry", "show", "-spiffeID", "spiffe://alpha.test/node/spire"}
		listed := spireCLI(t, show...)
		require.Contains(t, listed, "Found 1 entry\n")
		require.Contains(t, listed, "Parent ID               : "+parent+"\n")
		require.Contains(t, listed, "Selector                : spiffe_id:"+parent+"\n")
		require.Equal(t, listed, s.treaty(show...))

		out = s.treaty("token", "generate", "-spiffeID", "spiffe://alpha.test/node/treaty")
		token := strings.TrimSpace(strings.TrimPrefix(out, "Token: "))
		require.Contains(t, spireCLI(t, "entry", "show", "-parentID", "spiffe://alpha.test/spire/agent/join_token/"+token),
			"SPIFFE ID               : spiffe://alpha.test/node/treaty\n")
	})

	t.Run("an agent that never attested is not found", func(t *testing.T) {
		for _, verb := range []string{"show", "ban", "evict"} {
			args := []string{"agent", verb, "-spiffeID", "spiffe://alpha.test/spire/agent/join_token/none", "-socketPath", s.socket}
			_, stderr, err := runCmd(spire, args...)
			require.Error(t, err)
			require.Contains(t, stderr, "agent not found")
			_, stderr, err = runCmd(treatyBin, args...)
			require.Error(t, err)
			require.Equal(t, "error: agent not found\n", stderr)
		}
	})
}
