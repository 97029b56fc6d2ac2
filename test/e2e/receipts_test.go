package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// authorityState is one slot of `treaty localauthority x509 show -output
// json`.
type authorityState struct {
	AuthorityID string `json:"authority_id"`
	ExpiresAt   string `json:"expires_at"` // unix seconds, as protojson writes an int64
}

type authorityStates struct {
	Active, Prepared *authorityState
}

func x509Authorities(t *testing.T, s *server) authorityStates {
	t.Helper()
	var st authorityStates
	require.NoError(t, json.Unmarshal([]byte(s.treaty("localauthority", "x509", "show", "-output", "json")), &st))
	return st
}

func (a *authorityState) expires(t *testing.T) time.Time {
	t.Helper()
	sec, err := strconv.ParseInt(a.ExpiresAt, 10, 64)
	require.NoError(t, err)
	return time.Unix(sec, 0)
}

// nextAuthority is next_authority of `treaty federation status -output
// json`.
type nextAuthority struct {
	AuthorityID string `json:"authority_id"`
	Partners    []struct {
		TrustDomain      string `json:"trust_domain"`
		HasNextAuthority bool   `json:"has_next_authority"`
	} `json:"partners"`
}

func nextAuthorityStatus(t *testing.T, s *server) *nextAuthority {
	t.Helper()
	var resp struct {
		NextAuthority *nextAuthority `json:"next_authority"`
	}
	require.NoError(t, json.Unmarshal([]byte(s.treaty("federation", "status", "-output", "json")), &resp))
	return resp.NextAuthority
}

// lacking lists the partners without the next authority, "" when all have it.
func (n *nextAuthority) lacking() string {
	var out []string
	for _, p := range n.Partners {
		if !p.HasNextAuthority {
			out = append(out, p.TrustDomain)
		}
	}
	return strings.Join(out, ",")
}

// waitUntil polls cond until it holds, for at most d.
func waitUntil(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(200 * time.Millisecond) // the CA rotates on its own clock
	}
}

// TestRotationWaitsForPartners: alpha's three treaty partners fetch its
// bundle with their federation client SVIDs. One is offline when alpha
// publishes its next X.509 authority and stays away past the point where
// alpha would have activated it: alpha waits, refuses a manual activation
// (treaty's CLI without -force, and SPIRE's), and activates once the
// partner is back and has fetched it. The next rotation, with the partner
// gone for good, activates at the deadline and names it.
//
// Alpha's authorities are valid for 180 s (ca_ttl 150 s and 30 s of
// backdating): the successor is published 60 s after start, due 30 s
// before the active authority expires, and the deadline is 5 s
// (x509_svid_ttl) before it expires.
func TestRotationWaitsForPartners(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation takes minutes")
	}
	alphaAddr := freePort(t)
	alpha := newServer(t, "alpha.test", fmt.Sprintf("bundle_endpoint:\n  address: %s\n  profile: https_spiffe\n  refresh_hint: 1s\n"+
		"ca:\n  ca_ttl: 150s\n  x509_svid_ttl: 5s\n  jwt_svid_ttl: 5s\nagent_api:\n  agent_svid_ttl: 5s\n", alphaAddr))
	alpha.start()
	dir := t.TempDir()
	alphaBundle := filepath.Join(dir, "alpha.json")
	require.NoError(t, os.WriteFile(alphaBundle, []byte(alpha.treaty("bundle", "show", "-format", "spiffe")), 0o600))

	partners := map[string]*server{}
	for _, td := range []string{"beta.test", "gamma.test", "delta.test"} {
		p := newServer(t, td, "federation:\n  min_refresh: 1s\n")
		p.start()
		partners[td] = p
		// Alpha holds each partner's bundle: it authenticates their fetches.
		file := filepath.Join(dir, td+".json")
		require.NoError(t, os.WriteFile(file, []byte(p.treaty("bundle", "show", "-format", "spiffe")), 0o600))
		alpha.treaty("bundle", "set", "-format", "spiffe", "-id", "spiffe://"+td, "-path", file)
		p.treaty("federation", "create", "-trustDomain", "alpha.test", "-bundleEndpointURL", "https://"+alphaAddr,
			"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://alpha.test/spire/server",
			"-trustDomainBundlePath", alphaBundle, "-trustDomainBundleFormat", "spiffe")
		waitStatus(t, p, "alpha.test", func(st relationshipStatus) bool { return st.State == "healthy" })
	}
	delta := partners["delta.test"]
	delta.stop() // offline before alpha publishes its next authority

	first := x509Authorities(t, alpha).Active
	waitUntil(t, 2*time.Minute, func() bool { return x509Authorities(t, alpha).Prepared != nil }, "alpha prepared no successor")
	next := x509Authorities(t, alpha).Prepared.AuthorityID
	waitUntil(t, 30*time.Second, func() bool {
		n := nextAuthorityStatus(t, alpha)
		return n != nil && n.AuthorityID == next && len(n.Partners) == 3 && n.lacking() == "delta.test"
	}, "federation status never said that beta and gamma have the next authority and delta lacks it")
	require.Contains(t, alpha.treaty("federation", "status"), "2/3 partners have it; delta.test last fetched sequence 1")

	// Past five sixths: without receipts alpha would have activated.
	due := first.expires(t).Add(-30 * time.Second)   // five sixths of 150 s and the 30 s backdating
	time.Sleep(time.Until(due.Add(3 * time.Second))) // let the due point pass; nothing to wait on
	require.Equal(t, next, x509Authorities(t, alpha).Prepared.AuthorityID, "activated although delta lacks the authority")
	require.Contains(t, alpha.log.String(), "waits for partners to fetch it")

	_, stderr, err := alpha.treatyErr("localauthority", "x509", "activate", "-authorityID", next)
	require.Error(t, err, "activate without -force")
	require.Contains(t, stderr, "delta.test (last fetched sequence 1")
	require.Contains(t, stderr, "-force")
	t.Run("spire-server CLI is refused", func(t *testing.T) {
		_, stderr, err := runCmd(spireServer(t), "localauthority", "x509", "activate", "-socketPath", alpha.socket, "-authorityID", next)
		require.Error(t, err)
		require.Contains(t, stderr, "delta.test")
	})
	require.Equal(t, next, x509Authorities(t, alpha).Prepared.AuthorityID)

	// Delta comes back, fetches, and only then alpha activates, before
	// the deadline.
	delta.start()
	waitUntil(t, 20*time.Second, func() bool { return x509Authorities(t, alpha).Active.AuthorityID == next }, "alpha did not activate once delta had the authority")
	require.True(t, time.Now().Before(first.expires(t).Add(-5*time.Second)), "activated at the deadline, not when delta came back")
	require.NotContains(t, alpha.log.String(), "at its deadline")

	// The deadline: delta goes away for good before the next successor.
	delta.stop()
	active := x509Authorities(t, alpha).Active
	waitUntil(t, 2*time.Minute, func() bool { return x509Authorities(t, alpha).Prepared != nil }, "alpha prepared no second successor")
	second := x509Authorities(t, alpha).Prepared.AuthorityID
	waitUntil(t, 2*time.Minute, func() bool { return x509Authorities(t, alpha).Active.AuthorityID == second }, "alpha never activated at the deadline")
	require.False(t, time.Now().Before(active.expires(t).Add(-6*time.Second)), "activated before the deadline although delta lacks the authority")
	require.Contains(t, alpha.log.String(), "at its deadline although partners have not fetched it")
	require.Contains(t, alpha.log.String(), "partners=delta.test")
}
