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

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/stretchr/testify/require"
)

// spireProcess is a real spire-server on loopback.
type spireProcess struct {
	t      *testing.T
	bin    string
	socket string
	fedURL string
	// addr is the server API's address, for agents.
	addr   string
	log    *syncBuffer
	conf   string
	env    []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startSPIRE starts spire-server for trust domain td (keys on disk, so that
// it keeps its CA across a restart) with its bundle
// endpoint (https_spiffe, SPIRE's default) on a free port. env is added to
// the process environment (SSL_CERT_FILE for its https_web client).
func startSPIRE(t *testing.T, bin, td string, env ...string) *spireProcess {
	t.Helper()
	return startSPIREWith(t, bin, td, "", env...)
}

// startSPIREWith is startSPIRE with settings added to the server block
// (ca_ttl, say).
func startSPIREWith(t *testing.T, bin, td, settings string, env ...string) *spireProcess {
	t.Helper()
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "spire-e2e") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	_, apiPort, err := net.SplitHostPort(freePort(t))
	require.NoError(t, err)
	_, fedPort, err := net.SplitHostPort(freePort(t))
	require.NoError(t, err)
	p := &spireProcess{t: t, bin: bin, socket: filepath.Join(sockDir, "api.sock"), fedURL: "https://127.0.0.1:" + fedPort,
		addr: "127.0.0.1:" + apiPort, log: &syncBuffer{}}
	conf := fmt.Sprintf(`server {
  bind_address = "127.0.0.1"
  bind_port = "%s"
  socket_path = "%s"
  trust_domain = "%s"
  data_dir = "%s"
  log_level = "DEBUG"
  ca_key_type = "ec-p256"
%s
  federation {
    bundle_endpoint {
      address = "127.0.0.1"
      port = %s
    }
  }
}
plugins {
  DataStore "sql" {
    plugin_data {
      database_type = "sqlite3"
      connection_string = "%s"
    }
  }
  KeyManager "disk" {
    plugin_data {
      keys_path = "%s"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
}
`, apiPort, p.socket, td, dir, settings, fedPort, filepath.Join(dir, "datastore.sqlite3"), filepath.Join(dir, "keys.json"))
	p.conf, p.env = filepath.Join(dir, "server.conf"), env
	require.NoError(t, os.WriteFile(p.conf, []byte(conf), 0o600))
	p.start()
	return p
}

// start runs the server (again) and waits until it is healthy.
func (p *spireProcess) start() {
	p.t.Helper()
	p.cmd = exec.CommandContext(context.Background(), p.bin, "run", "-config", p.conf)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	require.NoError(p.t, p.cmd.Start())
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	p.t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	waitFor(p.t, func() bool {
		_, _, err := runCmd(p.bin, "healthcheck", "-socketPath", p.socket)
		return err == nil
	}, "spire-server did not become healthy:\n"+p.log.String())
}

// kill stops the server the hard way.
func (p *spireProcess) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *spireProcess) cli(args ...string) string {
	p.t.Helper()
	out, stderr, err := runCmd(p.bin, append(args, "-socketPath", p.socket)...)
	require.NoError(p.t, err, "spire-server %s\nstdout: %s\nstderr: %s\nlog:\n%s", strings.Join(args, " "), out, stderr, p.log)
	return out
}

// TestFederationWithSPIRE federates treaty and a real spire-server in both
// directions over https_spiffe, and checks that a CA rotation on either side
// reaches the other.
func TestFederationWithSPIRE(t *testing.T) {
	bin := spireServer(t)
	spire := startSPIRE(t, bin, "spire.test")
	addr := freePort(t)
	alpha := newServer(t, "alpha.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\nfederation:\n  min_refresh: 1s\n", addr))
	alpha.start()

	dir := t.TempDir()
	spireDoc, alphaDoc := filepath.Join(dir, "spire.json"), filepath.Join(dir, "alpha.json")
	require.NoError(t, os.WriteFile(spireDoc, []byte(spire.cli("bundle", "show", "-format", "spiffe")), 0o600))
	require.NoError(t, os.WriteFile(alphaDoc, []byte(alpha.treaty("bundle", "show", "-format", "spiffe")), 0o600))

	// treaty fetches SPIRE's bundle (SPIRE's default profile, https_spiffe).
	alpha.treaty("federation", "create", "-trustDomain", "spire.test", "-bundleEndpointURL", spire.fedURL,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://spire.test/spire/server",
		"-trustDomainBundlePath", spireDoc, "-trustDomainBundleFormat", "spiffe")
	waitStatus(t, alpha, "spire.test", func(st relationshipStatus) bool { return st.State == "healthy" })

	// SPIRE fetches treaty's bundle.
	spire.cli("bundle", "set", "-id", "spiffe://alpha.test", "-path", alphaDoc, "-format", "spiffe")
	spire.cli("federation", "create", "-trustDomain", "alpha.test", "-bundleEndpointURL", "https://"+addr,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://alpha.test/spire/server")
	spire.cli("federation", "refresh", "-id", "alpha.test")
	// SPIRE stores the authorities it fetched (it keeps its own sequence
	// numbering for federated bundles, so compare keys, not documents).
	held := parseSPIFFE(t, "alpha.test", spire.cli("bundle", "list", "-id", "spiffe://alpha.test", "-format", "spiffe"))
	ours := parseSPIFFE(t, "alpha.test", alpha.treaty("bundle", "show", "-format", "spiffe"))
	require.True(t, x509bundle.FromX509Authorities(ours.TrustDomain(), ours.X509Authorities()).Equal(
		x509bundle.FromX509Authorities(held.TrustDomain(), held.X509Authorities())), "SPIRE holds treaty's X.509 authorities")
	require.Equal(t, len(ours.JWTAuthorities()), len(held.JWTAuthorities()))

	// treaty rotates: SPIRE sees the prepared authority before it is used.
	alpha.treaty("localauthority", "x509", "prepare")
	spire.cli("federation", "refresh", "-id", "alpha.test")
	require.Len(t, parseSPIFFE(t, "alpha.test", spire.cli("bundle", "list", "-id", "spiffe://alpha.test", "-format", "spiffe")).X509Authorities(), 2)

	// SPIRE rotates: treaty sees it.
	spire.cli("localauthority", "x509", "prepare")
	want := len(parseSPIFFE(t, "spire.test", spire.cli("bundle", "show", "-format", "spiffe")).X509Authorities())
	require.GreaterOrEqual(t, want, 2)
	alpha.treaty("federation", "refresh", "-id", "spire.test")
	held = parseSPIFFE(t, "spire.test", alpha.treaty("bundle", "list", "-id", "spiffe://spire.test", "-format", "spiffe"))
	require.Len(t, held.X509Authorities(), want)
}

// TestSPIREFetchesTreatyOverHTTPSWeb has spire-server fetch a treaty bundle
// endpoint that presents a web certificate. SPIRE's https_web client has no
// CA setting, so the test CA reaches it through SSL_CERT_FILE.
func TestSPIREFetchesTreatyOverHTTPSWeb(t *testing.T) {
	bin := spireServer(t)
	pki := newWebPKI(t)
	certFile, keyFile := pki.serverCert(t, "alpha")
	addr := freePort(t)
	alpha := newServer(t, "alpha.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_web\n  web:\n    cert_file: %s\n    key_file: %s\n", addr, certFile, keyFile))
	alpha.start()
	spire := startSPIRE(t, bin, "spire.test", "SSL_CERT_FILE="+pki.caFile)

	spire.cli("federation", "create", "-trustDomain", "alpha.test", "-bundleEndpointURL", "https://"+addr, "-bundleEndpointProfile", "https_web")
	spire.cli("federation", "refresh", "-id", "alpha.test")
	held := parseSPIFFE(t, "alpha.test", spire.cli("bundle", "list", "-id", "spiffe://alpha.test", "-format", "spiffe"))
	ours := parseSPIFFE(t, "alpha.test", alpha.treaty("bundle", "show", "-format", "spiffe"))
	require.True(t, x509bundle.FromX509Authorities(ours.TrustDomain(), ours.X509Authorities()).Equal(
		x509bundle.FromX509Authorities(held.TrustDomain(), held.X509Authorities())))
}
