package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/server"
)

// startServerWithAgents stores nodes as attestation would have, then runs a
// real server over that database, and returns its admin socket.
func startServerWithAgents(t *testing.T, nodes ...datastore.AttestedNode) string {
	t.Helper()
	dataDir := t.TempDir()
	store, err := sqlite.Open(t.Context(), filepath.Join(dataDir, server.DatabaseFile))
	require.NoError(t, err)
	for _, n := range nodes {
		_, err := store.CreateAttestedNode(t.Context(), n)
		require.NoError(t, err)
	}
	require.NoError(t, store.Close())
	sockDir, err := os.MkdirTemp("", "treaty-cli") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	return startWith(t, config.Overrides{TrustDomain: "alpha.test", DataDir: dataDir, AdminSocket: filepath.Join(sockDir, "admin.sock"),
		WorkloadSocket: filepath.Join(sockDir, "public", "workload.sock")}, nil)
}

func TestAgentCommands(t *testing.T) {
	live := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	expired := time.Now().Add(-60 * 24 * time.Hour).Truncate(time.Second)
	socket := startServerWithAgents(t,
		datastore.AttestedNode{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/a"), AttestationType: "x509pop",
			SerialNumber: "11", NotAfter: live, CanReattest: true, AgentVersion: "1.15.3",
			Selectors: []datastore.Selector{{Type: "x509pop", Value: "subject:cn:a"}, {Type: "x509pop", Value: "ca:1"}}},
		datastore.AttestedNode{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/x509pop/old"), AttestationType: "x509pop",
			SerialNumber: "12", NotAfter: expired, CanReattest: true},
		datastore.AttestedNode{SPIFFEID: spiffeid.RequireFromString("spiffe://alpha.test/spire/agent/join_token/t1"), AttestationType: "join_token",
			NotAfter: live},
	)
	liveText, expiredText := time.Unix(live.Unix(), 0).String(), time.Unix(expired.Unix(), 0).String()
	agentA := `SPIFFE ID         : spiffe://alpha.test/spire/agent/x509pop/a
Attestation type  : x509pop
Expiration time   : ` + liveText + `
Serial number     : 11
Can re-attest     : true
Agent version     : 1.15.3

`
	agentT1 := `SPIFFE ID         : spiffe://alpha.test/spire/agent/join_token/t1
Attestation type  : join_token
Expiration time   : ` + liveText + `
Banned            : true
Can re-attest     : false

`
	agentOld := `SPIFFE ID         : spiffe://alpha.test/spire/agent/x509pop/old
Attestation type  : x509pop
Expiration time   : ` + expiredText + `
Serial number     : 12
Can re-attest     : true

`
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // the whole output, unless contains
		stderr string
		partly bool
	}{
		{name: "ok/list", args: []string{"agent", "list"}, stdout: "Found 3 attested agents:\n\n" + agentT1 + agentA + agentOld},
		{name: "ok/list by type", args: []string{"agent", "list", "-attestationType", "join_token"}, stdout: "Found 1 attested agent:\n\n" + agentT1},
		{name: "ok/list banned", args: []string{"agent", "list", "-banned", "true"}, stdout: "Found 1 attested agent:\n\n" + agentT1},
		{name: "ok/list other value means all", args: []string{"agent", "list", "-banned", "maybe"}, stdout: "Found 3 attested agents:\n\n" + agentT1 + agentA + agentOld},
		{name: "ok/list by selector", args: []string{"agent", "list", "-selector", "x509pop:ca:1", "-matchSelectorsOn", "exact"}, stdout: "No attested agents found\n"},
		{name: "ok/list by selectors superset", args: []string{"agent", "list", "-selector", "x509pop:ca:1"}, stdout: "Found 1 attested agent:\n\n" + agentA},
		{name: "ok/list expires before", args: []string{"agent", "list", "-expiresBefore", time.Now().Format(expiresBeforeLayout)}, stdout: "Found 1 attested agent:\n\n" + agentOld},
		{name: "ok/list json", args: []string{"agent", "list", "-canReattest", "false", "-output", "json"},
			stdout: `{"agents":[{"agent_version":"","attestation_type":"join_token","banned":true,"can_reattest":false,"id":{"path":"/spire/agent/join_token/t1","trust_domain":"alpha.test"},"selectors":[],"x509svid_expires_at":"1893553445","x509svid_serial_number":""}],"next_page_token":""}` + "\n"},
		{name: "ok/count", args: []string{"agent", "count"}, stdout: "3 attested agents\n"},
		{name: "ok/count one", args: []string{"agent", "count", "-canReattest", "false"}, stdout: "1 attested agent\n"},
		{name: "ok/count json", args: []string{"agent", "count", "-output", "json"}, stdout: `{"count":3}` + "\n"},
		{name: "ok/show", args: []string{"agent", "show", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a"},
			stdout: "Found an attested agent given its SPIFFE ID\n\n" + agentA + "Selectors         : x509pop:ca:1\nSelectors         : x509pop:subject:cn:a\n"},
		{name: "fail/show unknown", args: []string{"agent", "show", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/zz"}, code: 1, stderr: "error: agent not found\n"},
		{name: "fail/show not an agent", args: []string{"agent", "show", "-spiffeID", "spiffe://alpha.test/workload"}, code: 1, stderr: "invalid agent ID", partly: true},
		{name: "fail/show without id", args: []string{"agent", "show"}, code: 2, stderr: "-spiffeID is required", partly: true},
		{name: "fail/bad expiry", args: []string{"agent", "list", "-expiresBefore", "2030-01-01"}, code: 2, stderr: "-expiresBefore", partly: true},
		{name: "fail/bad selector", args: []string{"agent", "count", "-selector", "x509pop"}, code: 2, stderr: "write it as type:value", partly: true},
		{name: "fail/bad match", args: []string{"agent", "list", "-selector", "a:b", "-matchSelectorsOn", "all"}, code: 2, stderr: "use exact, any, superset or subset", partly: true},
		{name: "ok/purge dry run", args: []string{"agent", "purge", "-dryRun"},
			stdout: "Found 1 expired agent\n\n\nAgents that can be purged:\nSPIFFE ID         : spiffe://alpha.test/spire/agent/x509pop/old\n"},
		{name: "ok/purge dry run json", args: []string{"agent", "purge", "-dryRun", "-output", "json"},
			stdout: `{"expired_agents":[{"agent_id":"spiffe://alpha.test/spire/agent/x509pop/old","deleted":false}]}` + "\n"},
		{name: "ok/purge none expired that long", args: []string{"agent", "purge", "-expiredFor", "2000h"}, stdout: "No agents to purge.\n"},
		{name: "ok/purge", args: []string{"agent", "purge"},
			stdout: "Found 1 expired agent\n\nAgents purged:\nSPIFFE ID         : spiffe://alpha.test/spire/agent/x509pop/old\n"},
		{name: "ok/purged", args: []string{"agent", "count"}, stdout: "2 attested agents\n"},
		{name: "ok/ban", args: []string{"agent", "ban", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a"}, stdout: "Agent banned successfully\n"},
		{name: "ok/banned", args: []string{"agent", "show", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a"}, stdout: "Banned            : true\n", partly: true},
		{name: "ok/evict json", args: []string{"agent", "evict", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a", "-output", "json"}, stdout: "{}\n"},
		{name: "fail/evicted", args: []string{"agent", "evict", "-spiffeID", "spiffe://alpha.test/spire/agent/x509pop/a"}, code: 1, stderr: "error: agent not found\n"},
		{name: "ok/evict", args: []string{"agent", "evict", "-spiffeID", "spiffe://alpha.test/spire/agent/join_token/t1"}, stdout: "Agent evicted successfully\n"},
		{name: "ok/none left", args: []string{"agent", "list"}, stdout: "No attested agents found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := run(t, "", append(tt.args, "-socketPath", socket)...)
			require.Equal(t, tt.code, code, "stdout: %s\nstderr: %s", stdout, stderr)
			if tt.partly {
				require.Contains(t, stdout, tt.stdout)
				require.Contains(t, stderr, tt.stderr)
				return
			}
			require.Equal(t, tt.stdout, stdout)
			if tt.code != 0 {
				require.Equal(t, tt.stderr, stderr)
			}
		})
	}
}

func TestTokenGenerate(t *testing.T) {
	socket := startServerWithAgents(t)
	uuid := `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`

	out, stderr, code := run(t, "", "token", "generate", "-socketPath", socket)
	require.Zero(t, code, stderr)
	require.Regexp(t, "^Token: "+uuid+"\nWarning: Missing SPIFFE ID.\n$", out)

	out, stderr, code = run(t, "", "token", "generate", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/node/1", "-ttl", "60")
	require.Zero(t, code, stderr)
	require.Regexp(t, "^Token: "+uuid+"\n$", out)
	token := strings.TrimSpace(strings.TrimPrefix(out, "Token: "))

	out, stderr, code = run(t, "", "entry", "show", "-socketPath", socket, "-spiffeID", "spiffe://alpha.test/node/1")
	require.Zero(t, code, stderr)
	parent := "spiffe://alpha.test/spire/agent/join_token/" + token
	require.Contains(t, out, "Found 1 entry\n")
	require.Contains(t, out, "Parent ID               : "+parent+"\n")
	require.Contains(t, out, "Selector                : spiffe_id:"+parent+"\n")

	out, stderr, code = run(t, "", "token", "generate", "-socketPath", socket, "-ttl", "300", "-output", "json")
	require.Zero(t, code, stderr)
	var got struct {
		Value     string `json:"value"`
		ExpiresAt string `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Regexp(t, "^"+uuid+"$", got.Value)
	require.Regexp(t, regexp.MustCompile(`^\d+$`), got.ExpiresAt)

	for _, tt := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"fail/zero ttl", []string{"-ttl", "0"}, 2, "-ttl 0"},
		{"fail/bad id", []string{"-spiffeID", "node-1"}, 2, `-spiffeID "node-1"`},
		{"fail/reserved id", []string{"-spiffeID", "spiffe://alpha.test/spire/agent/x"}, 1, "reserved namespace"},
		{"fail/other trust domain", []string{"-spiffeID", "spiffe://beta.test/node"}, 1, "invalid agent ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := run(t, "", append([]string{"token", "generate", "-socketPath", socket}, tt.args...)...)
			require.Equal(t, tt.code, code, stderr)
			require.Contains(t, stderr, tt.stderr)
		})
	}
}
