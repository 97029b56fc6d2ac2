package telemetry

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/federation"
)

type staticStatus []federation.Status

func (s staticStatus) Status() []federation.Status { return s }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	body, err := io.ReadAll(rec.Body)
	require.NoError(t, err)
	return rec.Code, string(body)
}

func TestMetrics(t *testing.T) {
	success := time.Unix(1_800_000_000, 0)
	s := New(Config{Federation: staticStatus{
		{TrustDomain: "beta.test", State: federation.StateHealthy, LastSuccess: success, HasBundle: true, Sequence: 7, EarliestExpiry: success.Add(time.Hour),
			Ignored: []bundle.Ignored{{Index: 1, Check: bundle.CheckX5C}, {Index: 2, Check: bundle.CheckX5C}, {Index: 4, Check: bundle.CheckUse}}},
		{TrustDomain: "gamma.test", State: federation.StateFailing, ConsecutiveFailures: 3, LastReason: "connection_refused"},
	}})
	s.ObserveRequest(200, time.Millisecond)
	s.ObserveRequest(304, time.Millisecond)
	code, body := get(t, s.http.Handler, "/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		`treaty_federation_last_success_timestamp_seconds{trust_domain="beta.test"} 1.8e+09`,
		`treaty_federation_bundle_sequence{trust_domain="beta.test"} 7`,
		`treaty_federation_authority_expiry_timestamp_seconds{trust_domain="beta.test"} 1.8000036e+09`,
		`treaty_federation_consecutive_failures{trust_domain="gamma.test"} 3`,
		`treaty_federation_state{state="failing",trust_domain="gamma.test"} 1`,
		`treaty_federation_last_failure{reason="connection_refused",trust_domain="gamma.test"} 1`,
		`treaty_federation_ignored_keys{reason="x5c",trust_domain="beta.test"} 2`,
		`treaty_federation_ignored_keys{reason="use",trust_domain="beta.test"} 1`,
		`treaty_bundle_endpoint_requests_total{code="304"} 1`,
		`treaty_bundle_endpoint_request_duration_seconds_count{code="200"} 1`,
	} {
		require.Contains(t, body, want)
	}
	require.False(t, strings.Contains(body, `treaty_federation_last_success_timestamp_seconds{trust_domain="gamma.test"}`), "no success, no timestamp")
	require.False(t, strings.Contains(body, `treaty_federation_ignored_keys{reason="x5c",trust_domain="gamma.test"}`), "nothing ignored, no series")
	require.NotContains(t, body, `treaty_federation_state{state="healthy",trust_domain="gamma.test"}`, "only the current state has a series")
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady error
	s := New(Config{Ready: func() error { return notReady }})
	code, _ := get(t, s.http.Handler, "/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, s.http.Handler, "/readyz")
	require.Equal(t, http.StatusOK, code)
	notReady = errors.New("no active X.509 authority")
	code, body := get(t, s.http.Handler, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "no active X.509 authority")
}

func TestObserveRequest(t *testing.T) {
	s := New(Config{})
	for _, code := range []int{200, 200, 200, 304, 429, 99, 600} {
		s.ObserveRequest(code, time.Millisecond)
	}
	_, body := get(t, s.http.Handler, "/metrics")
	for _, want := range []string{
		`treaty_bundle_endpoint_requests_total{code="200"} 3`,
		`treaty_bundle_endpoint_requests_total{code="304"} 1`,
		`treaty_bundle_endpoint_requests_total{code="429"} 1`,
		`treaty_bundle_endpoint_requests_total{code="99"} 1`,
		`treaty_bundle_endpoint_requests_total{code="600"} 1`,
		`treaty_bundle_endpoint_request_duration_seconds_count{code="200"} 3`,
		`treaty_bundle_endpoint_request_duration_seconds_bucket{code="304",le="0.001"} 1`,
	} {
		require.Contains(t, body, want)
	}
	require.NotContains(t, body, `code="404"`, "a code no request had has no series")
}

// BenchmarkObserveRequest measures the bundle endpoint's metrics hook,
// called once per request.
func BenchmarkObserveRequest(b *testing.B) {
	s := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		s.ObserveRequest(200, 300*time.Microsecond)
	}
}
