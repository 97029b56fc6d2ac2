package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// relationshipStatus is one row of `treaty federation status -output json`.
type relationshipStatus struct {
	TrustDomain         string  `json:"trust_domain"`
	State               string  `json:"state"`
	ConsecutiveFailures float64 `json:"consecutive_failures"`
	Sequence            uint64  `json:"sequence,string"`
	LastError           string  `json:"last_error"`
	LastReason          string  `json:"last_reason"`
	LastSuccess         string  `json:"last_success"`
}

func federationStatus(t *testing.T, s *server, td string) relationshipStatus {
	t.Helper()
	st, ok := findStatus(t, s, td)
	require.True(t, ok, "no status for %s", td)
	return st
}

func findStatus(t *testing.T, s *server, td string) (relationshipStatus, bool) {
	t.Helper()
	var resp struct {
		Relationships []relationshipStatus `json:"relationships"`
	}
	require.NoError(t, json.Unmarshal([]byte(s.treaty("federation", "status", "-output", "json")), &resp))
	for _, r := range resp.Relationships {
		if r.TrustDomain == td {
			return r, true
		}
	}
	return relationshipStatus{}, false
}

// waitStatus polls the status until ok accepts it, for at most 20 seconds.
func waitStatus(t *testing.T, s *server, td string, ok func(relationshipStatus) bool) relationshipStatus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, found := findStatus(t, s, td)
		if found && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of %s never became as expected; last: %+v\nserver log:\n%s", td, st, s.log)
		}
		time.Sleep(100 * time.Millisecond) // the refresher works asynchronously
	}
}

// TestTwoServersFederate follows the README's manual route with the
// https_spiffe profile: bootstrap exchange, federation create on both
// sides, status turning healthy, a CA rotation crossing over, a partner
// going away and coming back.
func TestTwoServersFederate(t *testing.T) {
	alphaAddr, betaAddr := freePort(t), freePort(t)
	endpoint := func(addr string) string {
		return fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n  refresh_hint: 2s\nca:\n  ca_ttl: 24h\nfederation:\n  min_refresh: 1s\n", addr)
	}
	alpha := newServer(t, "alpha.test", endpoint(alphaAddr))
	beta := newServer(t, "beta.test", endpoint(betaAddr))
	alpha.start()
	beta.start()

	dir := t.TempDir()
	alphaBundle, betaBundle := filepath.Join(dir, "alpha.json"), filepath.Join(dir, "beta.json")
	require.NoError(t, os.WriteFile(alphaBundle, []byte(alpha.treaty("bundle", "show", "-format", "spiffe")), 0o600))
	require.NoError(t, os.WriteFile(betaBundle, []byte(beta.treaty("bundle", "show", "-format", "spiffe")), 0o600))

	out := alpha.treaty("federation", "create", "-trustDomain", "beta.test", "-bundleEndpointURL", "https://"+betaAddr,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://beta.test/spire/server",
		"-trustDomainBundlePath", betaBundle, "-trustDomainBundleFormat", "spiffe")
	require.Contains(t, out, "Trust domain              : beta.test")
	beta.treaty("federation", "create", "-trustDomain", "alpha.test", "-bundleEndpointURL", "https://"+alphaAddr,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://alpha.test/spire/server",
		"-trustDomainBundlePath", alphaBundle, "-trustDomainBundleFormat", "spiffe")

	healthy := func(st relationshipStatus) bool { return st.State == "healthy" }
	waitStatus(t, alpha, "beta.test", healthy)
	waitStatus(t, beta, "alpha.test", healthy)
	require.Contains(t, alpha.treaty("federation", "list"), "beta.test")

	// Beta rotates: the prepared authority reaches alpha before beta uses it.
	beta.treaty("localauthority", "x509", "prepare")
	betaSeq := sequence(t, parseSPIFFE(t, "beta.test", beta.treaty("bundle", "show", "-format", "spiffe")))
	alpha.treaty("federation", "refresh", "-id", "beta.test")
	st := federationStatus(t, alpha, "beta.test")
	require.Equal(t, betaSeq, st.Sequence)
	held := parseSPIFFE(t, "beta.test", alpha.treaty("bundle", "list", "-id", "spiffe://beta.test", "-format", "spiffe"))
	require.Len(t, held.X509Authorities(), 2)

	// Beta goes away: alpha keeps the last good bundle and says failing.
	beta.kill()
	st = waitStatus(t, alpha, "beta.test", func(st relationshipStatus) bool { return st.State == "failing" || st.State == "stale" })
	require.Equal(t, "connection_refused", st.LastReason, st.LastError)
	_, stderr, err := alpha.treatyErr("federation", "refresh", "-id", "beta.test")
	require.Error(t, err)
	require.Contains(t, stderr, "nothing listens on", "refresh explains the partner's failure, not an admin socket problem")
	require.Len(t, parseSPIFFE(t, "beta.test", alpha.treaty("bundle", "list", "-id", "spiffe://beta.test", "-format", "spiffe")).X509Authorities(), 2)

	// Beta comes back; alpha recovers without intervention.
	beta.start()
	waitStatus(t, alpha, "beta.test", healthy)
}
