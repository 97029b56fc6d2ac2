package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
)

// TestAgent attaches an unmodified spire-agent to treaty's agent API with a
// join token, and checks that a workload under the agent gets an X509-SVID
// that chains to treaty's bundle, with a partner's federated bundle; then
// that a banned agent stops.
func TestAgent(t *testing.T) {
	agentBin := spireAgent(t)
	partner := newServer(t, "beta.test", "")
	partner.start()
	partnerDoc := filepath.Join(t.TempDir(), "beta.json")
	require.NoError(t, os.WriteFile(partnerDoc, []byte(partner.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	partner.stop()

	agentAddr := freePort(t)
	s := newServer(t, "alpha.test", "agent_api:\n  address: "+agentAddr+"\n")
	s.start()
	s.treaty("bundle", "set", "-id", "spiffe://beta.test", "-path", partnerDoc, "-format", "spiffe")

	out := s.treaty("token", "generate", "-spiffeID", "spiffe://alpha.test/node1")
	token := strings.TrimSpace(strings.TrimPrefix(out, "Token: "))
	agentID := "spiffe://alpha.test/spire/agent/join_token/" + token

	a := startAgent(t, agentBin, s, agentAddr, token)
	waitFor(t, func() bool {
		return strings.Contains(s.treaty("agent", "list", "-output", "json"), "/spire/agent/join_token/"+token)
	}, "the agent never attested:\n"+a.log.String())

	s.treaty("entry", "create", "-parentID", "spiffe://alpha.test/node1", "-spiffeID", "spiffe://alpha.test/workload",
		"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()), "-federatesWith", "spiffe://beta.test")

	t.Run("a workload gets its SVID and the federated bundle", func(t *testing.T) {
		x509ctx := fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool {
			_, federated := c.Bundles.Get(spiffeid.RequireTrustDomainFromString("beta.test"))
			return len(c.SVIDs) > 0 && c.SVIDs[0].ID.String() == "spiffe://alpha.test/workload" && federated
		})
		svid := x509ctx.DefaultSVID()
		local := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
		id, _, err := x509svid.Verify(svid.Certificates, local)
		require.NoError(t, err, "the SVID chains to treaty's bundle")
		require.Equal(t, "spiffe://alpha.test/workload", id.String())
		beta, err := x509ctx.Bundles.GetX509BundleForTrustDomain(spiffeid.RequireTrustDomainFromString("beta.test"))
		require.NoError(t, err)
		require.True(t, beta.Equal(parseSPIFFE(t, "beta.test", readFile(t, partnerDoc)).X509Bundle()), "the partner's bundle as set")
	})

	t.Run("a banned agent stops", func(t *testing.T) {
		s.treaty("agent", "ban", "-spiffeID", agentID)
		select {
		case <-a.exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("the banned agent still runs after 60s:\n%s", a.log)
		}
		require.Contains(t, a.log.String(), "Agent is banned: removing SVID and shutting down", "the agent read the ban from treaty's answer")
		require.Contains(t, s.treaty("agent", "show", "-spiffeID", agentID), "Banned            : true\n")
	})
}

// agentProcess is a running spire-agent.
type agentProcess struct {
	socket string
	log    *syncBuffer
	exited chan struct{}
}

// startAgent runs spire-agent against s's agent API at addr, attesting
// with token; it is killed when the test ends.
func startAgent(t *testing.T, bin string, s *server, addr, token string) *agentProcess {
	t.Helper()
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "treaty-agent") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	bundlePath := filepath.Join(dir, "bundle.pem")
	require.NoError(t, os.WriteFile(bundlePath, []byte(s.treaty("bundle", "show", "-format", "pem")), 0o600))
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	a := &agentProcess{socket: filepath.Join(sockDir, "agent.sock"), log: &syncBuffer{}, exited: make(chan struct{})}
	conf := fmt.Sprintf(`agent {
  data_dir = %q
  log_level = "DEBUG"
  server_address = %q
  server_port = %q
  socket_path = %q
  trust_domain = %q
  trust_bundle_path = %q
  join_token = %q
}
plugins {
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`, filepath.Join(dir, "data"), host, port, a.socket, s.td, bundlePath, token)
	confPath := filepath.Join(dir, "agent.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(conf), 0o600))
	// The process outlives this call; Cleanup kills it.
	cmd := exec.CommandContext(context.Background(), bin, "run", "-config", confPath)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("spire-agent log:\n%s", a.log)
		}
	})
	return a
}

// fetchFromAgent reads X.509 contexts from the agent's Workload API until
// done accepts one, for at most a minute.
func fetchFromAgent(t *testing.T, a *agentProcess, done func(*workloadapi.X509Context) bool) *workloadapi.X509Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr("unix://"+a.socket))
	require.NoError(t, err)
	defer client.Close()
	found := make(chan *workloadapi.X509Context, 1)
	watcher := x509Watcher{onUpdate: func(c *workloadapi.X509Context) {
		if done(c) {
			select {
			case found <- c:
			default:
			}
		}
	}}
	go func() { _ = client.WatchX509Context(ctx, watcher) }()
	select {
	case c := <-found:
		return c
	case <-ctx.Done():
		t.Fatalf("no matching X.509 context from the agent within a minute:\n%s", a.log)
		return nil
	}
}

// x509Watcher adapts a function to workloadapi.X509ContextWatcher.
type x509Watcher struct {
	onUpdate func(*workloadapi.X509Context)
}

func (w x509Watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.onUpdate(c) }
func (w x509Watcher) OnX509ContextWatchError(error)                  {}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
