package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
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

// TestSPIRECLIAgentAdminSeeded stores agents in treaty's database as
// attestation would have, before the server starts, and checks that
// spire-server and treaty print them alike and manage them alike.
func TestSPIRECLIAgentAdminSeeded(t *testing.T) {
	spire := spireServer(t)
	s := newServer(t, "alpha.test", "")
	require.NoError(t, os.MkdirAll(s.dataDir, 0o700))
	store, err := sqlite.Open(t.Context(), filepath.Join(s.dataDir, "treaty.db"))
	require.NoError(t, err)
	joined := spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/join_token/4f0c2d1e-0000-4000-8000-000000000001")
	for _, n := range []datastore.AttestedNode{
		{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/a"), AttestationType: "x509pop", SerialNumber: "123456789",
			NotAfter: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), CanReattest: true, AgentVersion: "1.15.3",
			Selectors: []datastore.Selector{{Type: "x509pop", Value: "subject:cn:a"}, {Type: "x509pop", Value: "ca:fingerprint:1"}}},
		{SPIFFEID: joined, AttestationType: "join_token", SerialNumber: "7", NotAfter: time.Date(2029, 6, 1, 0, 0, 0, 0, time.UTC)},
	} {
		_, err := store.CreateAttestedNode(t.Context(), n)
		require.NoError(t, err)
	}
	require.NoError(t, store.Close())
	s.start()
	spireCLI := func(t *testing.T, args ...string) string {
		t.Helper()
		out, stderr, err := runCmd(spire, append(args, "-socketPath", s.socket)...)
		require.NoError(t, err, "spire-server %v\nstdout: %s\nstderr: %s", args, out, stderr)
		return out
	}
	same := func(t *testing.T, args ...string) string {
		t.Helper()
		theirs := spireCLI(t, args...)
		require.Equal(t, theirs, s.treaty(args...), "treaty prints what spire-server prints for %v", args)
		return theirs
	}

	t.Run("list, show and count print alike", func(t *testing.T) {
		require.Contains(t, same(t, "agent", "list"), "Found 2 attested agents:\n\n")
		same(t, "agent", "list", "-output", "json")
		require.Contains(t, same(t, "agent", "list", "-selector", "x509pop:subject:cn:a"), "Found 1 attested agent:\n\n")
		require.Contains(t, same(t, "agent", "list", "-expiresBefore", "2029-12-31 00:00:00 +0000 +00"), joined.String())
		require.Contains(t, same(t, "agent", "show", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a"),
			"Selectors         : x509pop:ca:fingerprint:1\nSelectors         : x509pop:subject:cn:a\n")
		same(t, "agent", "show", "-spiffeID", joined.String(), "-output", "json")
		require.Equal(t, "2 attested agents\n", same(t, "agent", "count"))
		require.Equal(t, "1 attested agent\n", same(t, "agent", "count", "-canReattest", "true"))
		require.Equal(t, "No agents to purge.\n", same(t, "agent", "purge", "-dryRun"))
	})

	t.Run("ban, then evict with the join token's alias entry", func(t *testing.T) {
		require.Equal(t, "Agent banned successfully\n", spireCLI(t, "agent", "ban", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a"))
		require.Contains(t, same(t, "agent", "show", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a"), "Banned            : true\n")

		spireCLI(t, "entry", "create", "-parentID", joined.String(), "-spiffeID", "spiffe://alpha.test/node/1", "-selector", "spiffe_id:"+joined.String())
		require.Contains(t, spireCLI(t, "entry", "show", "-parentID", joined.String()), "Found 1 entry\n")
		require.Equal(t, "Agent evicted successfully\n", spireCLI(t, "agent", "evict", "-spiffeID", joined.String()))
		require.Equal(t, "Found 0 entries\n", spireCLI(t, "entry", "show", "-parentID", joined.String()), "the alias entry went with the agent")
		require.Equal(t, "1 attested agent\n", same(t, "agent", "count"))
	})
}
