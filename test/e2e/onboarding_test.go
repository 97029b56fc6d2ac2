package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOnboardingDirectory federates through files in the onboarding
// format (a bare ClusterFederatedTrustDomain spec for an https_web partner
// and a full CR with an inline bootstrap bundle for an https_spiffe one),
// then removes a file.
func TestOnboardingDirectory(t *testing.T) {
	pki := newWebPKI(t)
	certFile, keyFile := pki.serverCert(t, "gamma")
	gammaAddr, betaAddr := freePort(t), freePort(t)
	gamma := newServer(t, "gamma.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_web\n  web:\n    cert_file: %s\n    key_file: %s\n", gammaAddr, certFile, keyFile))
	beta := newServer(t, "beta.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n", betaAddr))
	gamma.start()
	beta.start()

	dir := t.TempDir()
	alpha := newServer(t, "alpha.test", fmt.Sprintf("federation:\n  onboarding_dir: %s\n  class_name: dir-spire\n  ca_file: %s\n  min_refresh: 1s\n", dir, pki.caFile))
	alpha.start()

	gammaSpec := fmt.Sprintf("className: dir-spire\ntrustDomain: gamma.test\nbundleEndpointURL: https://%s\nbundleEndpointProfile:\n  type: https_web\n", gammaAddr)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gamma.yaml"), []byte(gammaSpec), 0o600))
	betaDoc := beta.treaty("bundle", "show", "-format", "spiffe")
	betaCR := fmt.Sprintf(`apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata:
  name: beta
spec:
  className: dir-spire
  trustDomain: beta.test
  bundleEndpointURL: https://%s
  bundleEndpointProfile:
    type: https_spiffe
    endpointSPIFFEID: spiffe://beta.test/spire/server
  trustDomainBundle: |-
%s
`, betaAddr, indent(betaDoc, "    "))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "beta.yaml"), []byte(betaCR), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.yaml"), []byte("trustDomain: [oops\n"), 0o600))

	healthy := func(st relationshipStatus) bool { return st.State == "healthy" }
	waitStatus(t, alpha, "gamma.test", healthy)
	waitStatus(t, alpha, "beta.test", healthy)
	require.Contains(t, alpha.log.String(), "broken.yaml", "the bad file is reported")

	gammaBundle := parseSPIFFE(t, "gamma.test", gamma.treaty("bundle", "show", "-format", "spiffe"))
	held := parseSPIFFE(t, "gamma.test", alpha.treaty("bundle", "list", "-id", "spiffe://gamma.test", "-format", "spiffe"))
	require.True(t, held.Equal(gammaBundle))

	// Files own their relationships: the API refuses to delete them.
	_, stderr, err := alpha.treatyErr("federation", "delete", "-id", "gamma.test")
	require.Error(t, err)
	require.Contains(t, stderr, "managed by onboarding:gamma.yaml")

	require.NoError(t, os.Remove(filepath.Join(dir, "gamma.yaml")))
	waitFor(t, func() bool { return !strings.Contains(alpha.treaty("federation", "list"), "gamma.test") }, "relationship of a removed file still listed")
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}
