package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // SPIRE's x509pop agent ID is the SHA-1 of the certificate
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
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
	partnerDoc := partnerBundle(t)

	agentAddr := freePort(t)
	// A short agent SVID, so that the agent renews it during the test.
	s := newServer(t, "alpha.test", "agent_api:\n  address: "+agentAddr+"\n  agent_svid_ttl: 20s\n")
	s.start()
	s.treaty("bundle", "set", "-id", "spiffe://beta.test", "-path", partnerDoc, "-format", "spiffe")

	out := s.treaty("token", "generate", "-spiffeID", "spiffe://alpha.test/node1")
	token := strings.TrimSpace(strings.TrimPrefix(out, "Token: "))
	agentID := "spiffe://alpha.test/spire/agent/join_token/" + token

	a := startAgent(t, agentBin, s, agentAddr, "join_token = "+strconv.Quote(token), `NodeAttestor "join_token" {
    plugin_data {}
  }`)
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

	t.Run("a workload gets a JWT-SVID that treaty's keys verify", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		svid, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "partner"}, workloadapi.WithAddr("unix://"+a.socket))
		require.NoError(t, err, "agent log:\n%s", a.log)
		local := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
		parsed, err := jwtsvid.ParseAndValidate(svid.Marshal(), local, []string{"partner"})
		require.NoError(t, err)
		require.Equal(t, "spiffe://alpha.test/workload", parsed.ID.String())
	})

	t.Run("the agent renews its SVID and keeps syncing", func(t *testing.T) {
		first := agentSerial(t, s, agentID)
		deadline := time.Now().Add(time.Minute)
		for agentSerial(t, s, agentID) == first {
			if time.Now().After(deadline) {
				t.Fatalf("the agent did not renew its 20s SVID within a minute:\n%s", a.log)
			}
			time.Sleep(500 * time.Millisecond) // the agent renews on its own schedule
		}
		// Syncing with the renewed SVID promotes it; an entry created now
		// reaches the workload.
		s.treaty("entry", "create", "-parentID", "spiffe://alpha.test/node1", "-spiffeID", "spiffe://alpha.test/workload2",
			"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
		fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool { return len(c.SVIDs) == 2 })
	})

	t.Run("the agent comes back after treaty restarts", func(t *testing.T) {
		s.stop()
		s.start()
		s.treaty("entry", "create", "-parentID", "spiffe://alpha.test/node1", "-spiffeID", "spiffe://alpha.test/workload3",
			"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()))
		fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool { return len(c.SVIDs) == 3 })
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

	t.Run("an evicted join-token agent stops", func(t *testing.T) {
		token := strings.TrimSpace(strings.TrimPrefix(s.treaty("token", "generate"), "Token: "))
		token = strings.TrimSpace(strings.Split(token, "\n")[0])
		b := startAgent(t, agentBin, s, agentAddr, "join_token = "+strconv.Quote(token), `NodeAttestor "join_token" {
    plugin_data {}
  }`)
		id := "spiffe://alpha.test/spire/agent/join_token/" + token
		waitFor(t, func() bool {
			_, _, err := s.treatyErr("agent", "show", "-spiffeID", id)
			return err == nil
		}, "the second agent never attested")
		s.treaty("agent", "evict", "-spiffeID", id)
		select {
		case <-b.exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("the evicted join-token agent still runs after 60s:\n%s", b.log)
		}
		require.Contains(t, b.log.String(), "shutting down", "its token is used: it cannot attest again")
	})
}

// TestAgentX509POP attaches a spire-agent with a node certificate from a
// CA treaty is configured with, and checks that a workload under it gets
// its SVID and, through federatesWith "*", the partner's bundle.
func TestAgentX509POP(t *testing.T) {
	agentBin := spireAgent(t)
	partnerDoc := partnerBundle(t)
	dir := t.TempDir()
	caPath, certPath, keyPath, fingerprint := nodePKI(t, dir, "node1")

	agentAddr := freePort(t)
	s := newServer(t, "alpha.test", fmt.Sprintf("agent_api:\n  address: %s\n  x509pop:\n    ca_bundle_path: %s\n", agentAddr, caPath))
	s.start()

	agentID := "spiffe://alpha.test/spire/agent/x509pop/" + fingerprint
	a := startAgent(t, agentBin, s, agentAddr, "", fmt.Sprintf(`NodeAttestor "x509pop" {
    plugin_data {
      private_key_path = %q
      certificate_path = %q
    }
  }`, keyPath, certPath))
	waitFor(t, func() bool {
		out, _, err := s.treatyErr("agent", "show", "-spiffeID", agentID)
		return err == nil && strings.Contains(out, "Attestation type  : x509pop\n")
	}, "the agent never attested:\n"+a.log.String())

	s.treaty("entry", "create", "-parentID", agentID, "-spiffeID", "spiffe://alpha.test/workload",
		"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()), "-federatesWith", "*")
	fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool {
		return len(c.SVIDs) > 0 && c.SVIDs[0].ID.String() == "spiffe://alpha.test/workload"
	})
	// A partner whose bundle arrives later reaches the entry too: "*" is
	// expanded again.
	s.treaty("bundle", "set", "-id", "spiffe://beta.test", "-path", partnerDoc, "-format", "spiffe")
	x509ctx := fetchFromAgent(t, a, func(c *workloadapi.X509Context) bool {
		_, federated := c.Bundles.Get(spiffeid.RequireTrustDomainFromString("beta.test"))
		return len(c.SVIDs) > 0 && c.SVIDs[0].ID.String() == "spiffe://alpha.test/workload" && federated
	})
	local := parseSPIFFE(t, "alpha.test", s.treaty("bundle", "show", "-format", "spiffe"))
	_, _, err := x509svid.Verify(x509ctx.DefaultSVID().Certificates, local)
	require.NoError(t, err, "the SVID chains to treaty's bundle")

	// Evicted, an x509pop agent attests again with its node certificate.
	first := agentSerial(t, s, agentID)
	s.treaty("agent", "evict", "-spiffeID", agentID)
	waitFor(t, func() bool {
		out, _, err := s.treatyErr("agent", "show", "-spiffeID", agentID)
		return err == nil && !strings.Contains(out, "Serial number     : "+first+"\n")
	}, "the evicted x509pop agent did not attest again:\n"+a.log.String())
	select {
	case <-a.exited:
		t.Fatalf("the evicted x509pop agent exited instead of attesting again:\n%s", a.log)
	default:
	}
}

// partnerBundle returns the path of a bundle of trust domain beta.test,
// taken from a treaty server that then stops.
func partnerBundle(t *testing.T) string {
	t.Helper()
	partner := newServer(t, "beta.test", "")
	partner.start()
	path := filepath.Join(t.TempDir(), "beta.json")
	require.NoError(t, os.WriteFile(path, []byte(partner.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	partner.stop()
	return path
}

// nodePKI writes a node CA and a node certificate with its key and the
// common name cn, as an operator provisions hosts for x509pop, and returns
// their paths and the SHA-1 fingerprint of the node certificate
// (lower-case hex).
func nodePKI(t *testing.T, dir, cn string) (caPath, certPath, keyPath, fingerprint string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node CA"}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	nodeTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	nodeDER, err := x509.CreateCertificate(rand.Reader, nodeTmpl, caCert, nodeKey.Public(), caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(nodeKey)
	require.NoError(t, err)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return path
	}
	sum := sha1.Sum(nodeDER) //nolint:gosec // SPIRE's x509pop agent ID is the SHA-1 of the certificate
	return write("ca.pem", "CERTIFICATE", caDER), write("node.pem", "CERTIFICATE", nodeDER), write("node.key", "PRIVATE KEY", keyDER), hex.EncodeToString(sum[:])
}

// agentSerial returns the serial number of the agent's current SVID as
// treaty's agent show prints it.
func agentSerial(t *testing.T, s *server, agentID string) string {
	t.Helper()
	for line := range strings.Lines(s.treaty("agent", "show", "-spiffeID", agentID)) {
		if v, ok := strings.CutPrefix(line, "Serial number     : "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("agent show prints no serial number for %s", agentID)
	return ""
}

// agentProcess is a running spire-agent.
type agentProcess struct {
	socket string
	log    *syncBuffer
	exited chan struct{}
}

// startAgent runs spire-agent against s's agent API at addr, with the
// extra agent setting (such as join_token) and the NodeAttestor plugin
// block given; it is killed when the test ends.
func startAgent(t *testing.T, bin string, s *server, addr, setting, nodeAttestor string) *agentProcess {
	t.Helper()
	return startAgentWithBundle(t, bin, s, addr, s.treaty("bundle", "show", "-format", "pem"), setting, nodeAttestor)
}

// startAgentWithBundle is startAgent with the bootstrap bundle (PEM) given.
func startAgentWithBundle(t *testing.T, bin string, s *server, addr, bundlePEM, setting, nodeAttestor string) *agentProcess {
	t.Helper()
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "treaty-agent") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	bundlePath := filepath.Join(dir, "bundle.pem")
	require.NoError(t, os.WriteFile(bundlePath, []byte(bundlePEM), 0o600))
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
  %s
}
plugins {
  %s
  KeyManager "memory" {
    plugin_data {}
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}
`, filepath.Join(dir, "data"), host, port, a.socket, s.td, bundlePath, setting, nodeAttestor)
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
	return fetchFromAgentWithin(t, a, time.Minute, done)
}

// fetchFromAgentWithin is fetchFromAgent with a deadline of its own.
func fetchFromAgentWithin(t *testing.T, a *agentProcess, within time.Duration, done func(*workloadapi.X509Context) bool) *workloadapi.X509Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
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
		t.Fatalf("no matching X.509 context from the agent within %s:\n%s", within, a.log)
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
