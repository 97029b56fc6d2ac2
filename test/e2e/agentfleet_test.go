package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
)

// TestAgentFleet attaches three spire-agents to one treaty at once, one
// with a join token and two with x509pop certificates of their own, and
// checks that each agent's workload gets its own SVID and not the others';
// that spire-agent's own CLI prints it; and that an entry federating with a
// trust domain treaty holds no bundle for still gets its SVID.
func TestAgentFleet(t *testing.T) {
	agentBin := spireAgent(t)
	dir := t.TempDir()
	caB, certB, keyB, fingerprintB := nodePKI(t, filepath.Join(dir, mkdir(t, dir, "b")), "node-b")
	caC, certC, keyC, _ := nodePKI(t, filepath.Join(dir, mkdir(t, dir, "c")), "node-c")
	caBundle := filepath.Join(dir, "node-cas.pem")
	require.NoError(t, os.WriteFile(caBundle, []byte(readFile(t, caB)+readFile(t, caC)), 0o600))

	agentAddr := freePort(t)
	s := newServer(t, "alpha.test", fmt.Sprintf("agent_api:\n  address: %s\n  x509pop:\n    ca_bundle_path: %s\n", agentAddr, caBundle))
	s.start()
	uid := fmt.Sprintf("unix:uid:%d", os.Getuid())

	// Agent A: a join token whose -spiffeID makes the node alias.
	token := strings.TrimSpace(strings.TrimPrefix(s.treaty("token", "generate", "-spiffeID", "spiffe://alpha.test/node/a"), "Token: "))
	a := startAgent(t, agentBin, s, agentAddr, "join_token = "+strconv.Quote(token), `NodeAttestor "join_token" {
    plugin_data {}
  }`)
	// Agent B: x509pop, its entry parented to its agent ID.
	b := startAgent(t, agentBin, s, agentAddr, "", x509popPlugin(certB, keyB))
	// Agent C: x509pop, its entry parented to a node alias on its
	// certificate's common name.
	c := startAgent(t, agentBin, s, agentAddr, "", x509popPlugin(certC, keyC))
	waitFor(t, func() bool {
		out := s.treaty("agent", "count")
		return strings.Contains(out, "3 attested agents")
	}, "the three agents never attested:\n"+a.log.String()+b.log.String()+c.log.String())

	s.treaty("entry", "create", "-parentID", "spiffe://alpha.test/node/a", "-spiffeID", "spiffe://alpha.test/workload/a", "-selector", uid)
	s.treaty("entry", "create", "-parentID", "spiffe://alpha.test/spire/agent/x509pop/"+fingerprintB,
		"-spiffeID", "spiffe://alpha.test/workload/b", "-selector", uid)
	s.treaty("entry", "create", "-node", "-spiffeID", "spiffe://alpha.test/node/c", "-selector", "x509pop:subject:cn:node-c")
	s.treaty("entry", "create", "-parentID", "spiffe://alpha.test/node/c", "-spiffeID", "spiffe://alpha.test/workload/c", "-selector", uid,
		"-federatesWith", "spiffe://unknown-partner.test")

	t.Run("each workload gets its own SVID and not the others'", func(t *testing.T) {
		local := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
		for name, agent := range map[string]*agentProcess{"a": a, "b": b, "c": c} {
			want := "spiffe://alpha.test/workload/" + name
			x509ctx := fetchFromAgent(t, agent, func(c *workloadapi.X509Context) bool {
				return len(c.SVIDs) == 1 && c.SVIDs[0].ID.String() == want
			})
			_, _, err := x509svid.Verify(x509ctx.DefaultSVID().Certificates, local)
			require.NoError(t, err, "agent %s: the SVID chains to treaty's bundle", name)
		}
	})

	t.Run("an entry federating with a partner we hold no bundle for gets its SVID", func(t *testing.T) {
		x509ctx := fetchFromAgent(t, c, func(c *workloadapi.X509Context) bool {
			return len(c.SVIDs) == 1 && c.SVIDs[0].ID.String() == "spiffe://alpha.test/workload/c"
		})
		_, found := x509ctx.Bundles.Get(spiffeid.RequireTrustDomainFromString("unknown-partner.test"))
		require.False(t, found, "no bundle is invented for the unknown partner")
	})

	t.Run("spire-agent api fetch x509 prints the workload's SVID", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, agentBin, "api", "fetch", "x509", "-socketPath", b.socket).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "spiffe://alpha.test/workload/b")
		require.NotContains(t, string(out), "spiffe://alpha.test/workload/a")
	})
}

// x509popPlugin is spire-agent's x509pop NodeAttestor block for the node
// certificate and key given.
func x509popPlugin(certPath, keyPath string) string {
	return fmt.Sprintf(`NodeAttestor "x509pop" {
    plugin_data {
      private_key_path = %q
      certificate_path = %q
    }
  }`, keyPath, certPath)
}

// mkdir makes the directory name under dir and returns name.
func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o700))
	return name
}
