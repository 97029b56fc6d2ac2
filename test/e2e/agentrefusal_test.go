package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAgentRefusals starts spire-agents that treaty cannot accept, and
// checks that each says why in the words docs/agents.md's troubleshooting
// section quotes.
func TestAgentRefusals(t *testing.T) {
	agentBin := spireAgent(t)
	dir := t.TempDir()
	_, certPath, keyPath, _ := nodePKI(t, dir, "stranger") // a CA treaty is not configured with

	other := newServer(t, "alpha.test", "")
	other.start()
	wrongBundle := other.treaty("bundle", "show", "-format", "pem")
	other.stop()

	agentAddr := freePort(t)
	s := newServer(t, "alpha.test", "agent_api:\n  address: "+agentAddr+"\n")
	s.start()
	joinToken := `NodeAttestor "join_token" {
    plugin_data {}
  }`

	t.Run("a used join token", func(t *testing.T) {
		token := newToken(s)
		first := startAgent(t, agentBin, s, agentAddr, "join_token = "+strconv.Quote(token), joinToken)
		waitFor(t, func() bool { return strings.Contains(first.log.String(), "Node attestation was successful") },
			"the first agent never attested") // startAgent logs the agent's output on failure
		second := startAgent(t, agentBin, s, agentAddr, "join_token = "+strconv.Quote(token), joinToken)
		waitExit(t, second, 30*time.Second)
		require.Contains(t, second.log.String(), "failed to attest: join token does not exist or has already been used")
	})

	t.Run("a bootstrap bundle from another server", func(t *testing.T) {
		token := newToken(s)
		a := startAgentWithBundle(t, agentBin, s, agentAddr, wrongBundle, "join_token = "+strconv.Quote(token), joinToken)
		waitFor(t, func() bool { return strings.Contains(a.log.String(), "x509: certificate signed by unknown authority") },
			"the agent never reported the unknown authority")
		require.Contains(t, a.log.String(), "Trust Bundle and Server don't agree")
	})

	t.Run("x509pop when treaty has no node CA", func(t *testing.T) {
		a := startAgent(t, agentBin, s, agentAddr, "", x509popPlugin(certPath, keyPath))
		waitFor(t, func() bool {
			return strings.Contains(a.log.String(), `no attestor of type \"x509pop\"; this server accepts: join_token`)
		}, "the agent never reported the missing attestor")
	})

	t.Run("x509pop with a certificate from another CA", func(t *testing.T) {
		caPath, _, _, _ := nodePKI(t, filepath.Join(dir, mkdir(t, dir, "trusted")), "node1")
		popAddr := freePort(t)
		pop := newServer(t, "alpha.test", fmt.Sprintf("agent_api:\n  address: %s\n  x509pop:\n    ca_bundle_path: %s\n", popAddr, caPath))
		pop.start()
		a := startAgent(t, agentBin, pop, popAddr, "", x509popPlugin(certPath, keyPath))
		waitExit(t, a, 30*time.Second)
		require.Contains(t, a.log.String(), "failed to attest: certificate verification failed: x509: certificate signed by unknown authority")
	})
}

// newToken returns a join token from treaty token generate.
func newToken(s *server) string {
	first, _, _ := strings.Cut(s.treaty("token", "generate"), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "Token: "))
}

// waitExit waits for the agent to exit, for at most within.
func waitExit(t *testing.T, a *agentProcess, within time.Duration) {
	t.Helper()
	select {
	case <-a.exited:
	case <-time.After(within):
		t.Fatalf("the agent still runs after %s:\n%s", within, a.log)
	}
}
