package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
)

// TestAgentPartnerRotation federates treaty with a second treaty server,
// lets a workload under a spire-agent receive the partner's bundle, then
// has the partner prepare a new X.509 authority: after `treaty federation
// refresh` the new authority reaches the workload through the agent within
// about one agent sync interval.
func TestAgentPartnerRotation(t *testing.T) {
	agentBin := spireAgent(t)
	betaAddr, agentAddr := freePort(t), freePort(t)
	beta := newServer(t, "beta.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n  refresh_hint: 2s\nca:\n  ca_ttl: 24h\n", betaAddr))
	beta.start()
	alpha := newServer(t, "alpha.test", fmt.Sprintf("agent_api:\n  address: %s\nfederation:\n  min_refresh: 1s\n", agentAddr))
	alpha.start()

	betaBundle := filepath.Join(t.TempDir(), "beta.json")
	require.NoError(t, os.WriteFile(betaBundle, []byte(beta.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	alpha.treaty("federation", "create", "-trustDomain", "beta.test", "-bundleEndpointURL", "https://"+betaAddr,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://beta.test/spire/server",
		"-trustDomainBundlePath", betaBundle, "-trustDomainBundleFormat", "spiffe")
	waitStatus(t, alpha, "beta.test", func(st relationshipStatus) bool { return st.State == "healthy" })

	token := strings.TrimSpace(strings.TrimPrefix(alpha.treaty("token", "generate", "-spiffeID", "spiffe://alpha.test/node"), "Token: "))
	a := startAgent(t, agentBin, alpha, agentAddr, "join_token = "+strconv.Quote(token), `NodeAttestor "join_token" {
    plugin_data {}
  }`)
	alpha.treaty("entry", "create", "-parentID", "spiffe://alpha.test/node", "-spiffeID", "spiffe://alpha.test/workload",
		"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()), "-federatesWith", "spiffe://beta.test")
	betaTD := spiffeid.RequireTrustDomainFromString("beta.test")
	betaAuthorities := func(c *workloadapi.X509Context) int {
		b, ok := c.Bundles.Get(betaTD)
		if !ok {
			return 0
		}
		return len(b.X509Authorities())
	}
	fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool { return len(c.SVIDs) == 1 && betaAuthorities(c) == 1 })

	beta.treaty("localauthority", "x509", "prepare")
	alpha.treaty("federation", "refresh", "-id", "beta.test")
	require.Len(t, parseSPIFFE(t, "beta.test", alpha.treaty("bundle", "list", "-id", "spiffe://beta.test", "-format", "spiffe")).X509Authorities(), 2,
		"treaty holds the partner's prepared authority")
	// The agent asks for federated bundles on every sync (5 s ± 10 %);
	// allow one interval and the time to push the update to the workload.
	start := time.Now()
	x509ctx := fetchFromAgentWithin(t, a, 10*time.Second, func(c *workloadapi.X509Context) bool { return betaAuthorities(c) == 2 })
	t.Logf("the partner's new authority reached the workload %s after the refresh", time.Since(start).Round(100*time.Millisecond))
	held, err := x509ctx.Bundles.GetX509BundleForTrustDomain(betaTD)
	require.NoError(t, err)
	require.True(t, held.Equal(parseSPIFFE(t, "beta.test", beta.treaty("bundle", "show", "-format", "spiffe")).X509Bundle()),
		"the workload holds the partner's bundle as the partner publishes it")
}
