package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
)

// sameX509 reports whether two bundles hold the same X.509 authorities.
func sameX509(a, b *spiffebundle.Bundle) bool {
	return x509bundle.FromX509Authorities(a.TrustDomain(), a.X509Authorities()).Equal(
		x509bundle.FromX509Authorities(b.TrustDomain(), b.X509Authorities()))
}

// treaty as the federation layer of a real spire-server: treaty publishes
// SPIRE's bundle on its endpoint (with an endpoint SVID SPIRE mints), a
// treaty partner federates with it, the partner's bundle lands in SPIRE, a
// rotation on either side crosses over, and when SPIRE is down treaty keeps
// serving and catches up once it is back.
func TestGatewayInFrontOfSPIRE(t *testing.T) {
	spire := startSPIRE(t, spireServer(t), "spire.test")
	gwAddr := freePort(t)
	gw := newServer(t, "spire.test", fmt.Sprintf("spire_server:\n  admin_socket: %s\nbundle_endpoint:\n  address: %s\n  profile: https_spiffe\n  refresh_hint: 2s\nfederation:\n  min_refresh: 1s\n",
		spire.socket, gwAddr))
	gw.start()
	require.Contains(t, gw.log.String(), "runs no CA of its own")
	endpoint := &replica{server: gw, endpoint: gwAddr}
	spireBundle := func() *spiffebundle.Bundle {
		return parseSPIFFE(t, "spire.test", spire.cli("bundle", "show", "-format", "spiffe"))
	}
	served := func() *spiffebundle.Bundle { return parseSPIFFE(t, "spire.test", endpoint.mustFetch(t).body) }
	require.True(t, sameX509(spireBundle(), served()), "treaty's endpoint serves SPIRE's bundle")

	// treaty's own CA commands are not there: the CA is SPIRE's.
	_, stderr, err := gw.treatyErr("localauthority", "x509", "show")
	require.Error(t, err)
	require.Contains(t, stderr, "treaty is the federation layer of the SPIRE server at "+spire.socket)

	// A treaty partner federates with the SPIRE trust domain through
	// treaty's endpoint, and treaty with it.
	beta := startPartner(t, "beta.test")
	dir := t.TempDir()
	spireDoc, betaDoc := filepath.Join(dir, "spire.json"), filepath.Join(dir, "beta.json")
	require.NoError(t, os.WriteFile(spireDoc, []byte(spire.cli("bundle", "show", "-format", "spiffe")), 0o600))
	require.NoError(t, os.WriteFile(betaDoc, []byte(beta.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	beta.treaty("federation", "create", "-trustDomain", "spire.test", "-bundleEndpointURL", "https://"+gwAddr,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://spire.test/treaty/bundle-endpoint",
		"-trustDomainBundlePath", spireDoc, "-trustDomainBundleFormat", "spiffe")
	gw.treaty("federation", "create", "-trustDomain", "beta.test", "-bundleEndpointURL", "https://"+beta.endpoint,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://beta.test/spire/server",
		"-trustDomainBundlePath", betaDoc, "-trustDomainBundleFormat", "spiffe")
	healthy := func(st relationshipStatus) bool { return st.State == "healthy" }
	waitStatus(t, beta.server, "spire.test", healthy)
	waitStatus(t, gw, "beta.test", healthy)

	// The partner's bundle is written into SPIRE, for SPIRE's agents.
	betaBundle := func() *spiffebundle.Bundle {
		return parseSPIFFE(t, "beta.test", beta.treaty("bundle", "show", "-format", "spiffe"))
	}
	inSPIRE := func() *spiffebundle.Bundle {
		out, _, err := runCmd(spire.bin, "bundle", "list", "-id", "spiffe://beta.test", "-format", "spiffe", "-socketPath", spire.socket)
		if err != nil || !strings.Contains(out, "keys") {
			return spiffebundle.New(betaBundle().TrustDomain())
		}
		return parseSPIFFE(t, "beta.test", out)
	}
	waitFor(t, func() bool { return sameX509(betaBundle(), inSPIRE()) }, "SPIRE holds beta's bundle")

	// A workload behind a real spire-agent of the SPIRE server gets an SVID
	// and, through SPIRE, the partner's bundle treaty fetched.
	token := strings.TrimSpace(strings.TrimPrefix(spire.cli("token", "generate", "-spiffeID", "spiffe://spire.test/node"), "Token: "))
	agent := startAgentWithBundle(t, spireAgent(t), gw, spire.addr, spire.cli("bundle", "show", "-format", "pem"),
		"join_token = "+strconv.Quote(token), "NodeAttestor \"join_token\" {\n    plugin_data {}\n  }")
	spire.cli("entry", "create", "-parentID", "spiffe://spire.test/node", "-spiffeID", "spiffe://spire.test/workload",
		"-selector", fmt.Sprintf("unix:uid:%d", os.Getuid()), "-federatesWith", "spiffe://beta.test")
	betaTD := spiffeid.RequireTrustDomainFromString("beta.test")
	partnerAuthorities := func(c *workloadapi.X509Context) int {
		b, ok := c.Bundles.Get(betaTD)
		if !ok {
			return 0
		}
		return len(b.X509Authorities())
	}
	got := fetchFromAgent(t, agent, func(c *workloadapi.X509Context) bool { return len(c.SVIDs) > 0 && partnerAuthorities(c) == 1 })
	require.Equal(t, "spiffe://spire.test/workload", got.SVIDs[0].ID.String())

	// SPIRE rotates: treaty publishes SPIRE's prepared authority, and the
	// partner gets it from treaty's endpoint before SPIRE signs with it.
	spire.cli("localauthority", "x509", "prepare")
	require.Len(t, spireBundle().X509Authorities(), 2)
	waitFor(t, func() bool { return len(served().X509Authorities()) == 2 }, "treaty publishes SPIRE's prepared authority")
	beta.treaty("federation", "refresh", "-id", "spire.test")
	require.True(t, sameX509(spireBundle(), parseSPIFFE(t, "spire.test",
		beta.treaty("bundle", "list", "-id", "spiffe://spire.test", "-format", "spiffe"))), "the partner holds SPIRE's new authority")

	// SPIRE goes away: treaty keeps serving its last bundle; the partner
	// rotates meanwhile; once SPIRE is back, treaty writes the new bundle in.
	before := endpoint.mustFetch(t)
	spire.kill()
	beta.treaty("localauthority", "x509", "prepare")
	gw.treaty("federation", "refresh", "-id", "beta.test")
	during := endpoint.mustFetch(t)
	require.Equal(t, before.body, during.body, "the last bundle is served while SPIRE is down")
	doctor, _, _ := gw.treatyErr("doctor")
	require.Contains(t, doctor, "spire-server")

	spire.start()
	waitFor(t, func() bool { return len(inSPIRE().X509Authorities()) == 2 && sameX509(betaBundle(), inSPIRE()) },
		"treaty writes the partner's rotated bundle into SPIRE once it is back")
	require.GreaterOrEqual(t, endpoint.mustFetch(t).seq, before.seq, "the sequence never goes down")
	fetchFromAgent(t, agent, func(c *workloadapi.X509Context) bool { return partnerAuthorities(c) == 2 })
}
