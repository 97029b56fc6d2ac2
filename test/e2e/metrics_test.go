package e2e

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMetricsOfAServer scrapes a running server: its build, its own
// authorities, the Workload API, and a partner that never answers, polled
// and counted as failing.
func TestMetricsOfAServer(t *testing.T) {
	addr := freePort(t)
	s := newServer(t, "alpha.test", "telemetry:\n  address: "+addr+"\nfederation:\n  min_refresh: 1s\n")
	s.start()
	s.treaty("federation", "create", "-trustDomain", "dead.test", "-bundleEndpointURL", "https://127.0.0.1:9/", "-bundleEndpointProfile", "https_web")
	waitStatus(t, s, "dead.test", func(st relationshipStatus) bool { return st.ConsecutiveFailures > 0 })
	s.treaty("localauthority", "x509", "prepare")

	body := scrapeMetrics(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`treaty_build_info{goversion="go`,
		`treaty_federation_polls_total{result="failure",trust_domain="dead.test"} `,
		`treaty_federation_state{state="never_fetched",trust_domain="dead.test"} 1`,
		`treaty_authority_expiry_timestamp_seconds{kind="x509",state="active"} `,
		`treaty_authority_expiry_timestamp_seconds{kind="x509",state="prepared"} `,
		`treaty_authority_prepared{kind="x509"} 1`,
		`treaty_authority_prepared{kind="jwt"} 0`,
		`treaty_workload_streams 0`,
		`treaty_workload_svids_issued_total{kind="x509"} 0`,
	} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, `treaty_federation_state{state="healthy",trust_domain="dead.test"}`, "one state series per partner")
}

func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body)
}
