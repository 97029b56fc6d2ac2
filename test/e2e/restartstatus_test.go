package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A server restarted while a partner is down still says when the partner
// last answered, and its last-success gauge, which the README's alert
// uses, keeps covering that partner.
func TestLastSuccessSurvivesARestartDuringAnOutage(t *testing.T) {
	beta := startPartner(t, "beta.test")
	telemetry := freePort(t)
	alpha := newServer(t, "alpha.test", fmt.Sprintf("telemetry:\n  address: %s\nfederation:\n  min_refresh: 1s\n", telemetry))
	alpha.start()
	bundle := filepath.Join(t.TempDir(), "beta.json")
	require.NoError(t, os.WriteFile(bundle, []byte(beta.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	alpha.treaty("federation", "create", "-trustDomain", "beta.test", "-bundleEndpointURL", "https://"+beta.endpoint,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://beta.test/spire/server",
		"-trustDomainBundlePath", bundle, "-trustDomainBundleFormat", "spiffe")
	healthy := waitStatus(t, alpha, "beta.test", func(st relationshipStatus) bool { return st.State == "healthy" })
	require.NotEmpty(t, healthy.LastSuccess)

	beta.kill()
	alpha.stop()
	alpha.start()
	st := waitStatus(t, alpha, "beta.test", func(st relationshipStatus) bool { return st.LastError != "" })
	require.Equal(t, healthy.LastSuccess, st.LastSuccess, "the last success from before the restart")
	require.NotContains(t, alpha.treaty("federation", "status"), "never")
	metrics := httpGetBody(t, "http://"+telemetry+"/metrics")
	require.True(t, strings.Contains(metrics, `treaty_federation_last_success_timestamp_seconds{trust_domain="beta.test"}`), metrics)
}
