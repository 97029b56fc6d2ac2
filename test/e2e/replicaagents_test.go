package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
)

// TestAgentsAcrossReplicas: two replicas of one trust domain on PostgreSQL,
// an unmodified spire-agent attached to the second one only. A join token
// made through the first attests the agent on the second; an entry created
// and an authority prepared through the first reach the agent's workload;
// the first lists the agent and bans it, and the agent, talking to the
// second, stops.
func TestAgentsAcrossReplicas(t *testing.T) {
	agentBin := spireAgent(t)
	rs := newReplicaSetWith(t, 2, true)
	r0, r1 := rs.replicas[0], rs.replicas[1]

	token := strings.TrimSpace(strings.TrimPrefix(r0.treaty("token", "generate", "-spiffeID", "spiffe://alpha.test/node1"), "Token: "))
	agentID := "spiffe://alpha.test/spire/agent/join_token/" + token
	a := startAgent(t, agentBin, r1.server, r1.agents, "join_token = "+strconv.Quote(token), `NodeAttestor "join_token" {
    plugin_data {}
  }`)
	waitFor(t, func() bool {
		_, _, err := r0.treatyErr("agent", "show", "-spiffeID", agentID)
		return err == nil
	}, "the agent attested on the second replica never showed on the first:\n"+a.log.String())

	r0.treaty("entry", "create", "-parentID", "spiffe://alpha.test/node1", "-spiffeID", "spiffe://alpha.test/workload",
		"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
	x509ctx := fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool {
		return len(c.SVIDs) > 0 && c.SVIDs[0].ID.String() == "spiffe://alpha.test/workload"
	})
	local := parseSPIFFE(t, "alpha.test", r0.treaty("bundle", "show", "-format", "spiffe"))
	_, _, err := x509svid.Verify(x509ctx.DefaultSVID().Certificates, local)
	require.NoError(t, err, "the SVID the second replica signed chains to the bundle the first publishes")

	// An authority prepared through the first replica reaches the agent
	// of the second at its next sync.
	r0.treaty("localauthority", "x509", "prepare")
	fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool {
		b, err := c.Bundles.GetX509BundleForTrustDomain(local.TrustDomain())
		return err == nil && len(b.X509Authorities()) == 2
	})

	r0.treaty("agent", "ban", "-spiffeID", agentID)
	select {
	case <-a.exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent banned through the first replica still runs after 60s:\n%s", a.log)
	}
	require.Contains(t, a.log.String(), "Agent is banned: removing SVID and shutting down", "the second replica refused the banned agent")
}
