package e2e

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
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

// spireAuthorities is `spire-server localauthority x509 show -output json`.
func spireAuthorities(t *testing.T, p *spireProcess) authorityStates {
	t.Helper()
	var st authorityStates
	require.NoError(t, json.Unmarshal([]byte(p.cli("localauthority", "x509", "show", "-output", "json")), &st))
	require.NotNil(t, st.Active, "spire-server has no active X.509 authority")
	return st
}

// mint runs a CLI's `x509 mint -write DIR` and returns the SVID it wrote.
func mint(t *testing.T, run func(dir string)) []*x509.Certificate {
	t.Helper()
	dir := t.TempDir()
	run(dir)
	svid, err := x509svid.Load(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
	require.NoError(t, err)
	return svid.Certificates
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
// partner is back and has fetched it; an SVID it signs then verifies with
// the bundle every partner holds. The next rotation, with the partner gone
// for good, activates at the deadline and names it.
//
// Side by side, a real spire-server with the same ca_ttl, whose bundle the
// same partner fetched before it went offline, activates its next
// authority on its fixed schedule while the partner is away: an SVID it
// signs then does not verify with the bundle the partner holds.
//
// Alpha's authorities are valid for 180 s (ca_ttl 150 s and 30 s of
// backdating): the successor is published 60 s after start, due 30 s
// before the active authority expires, and the deadline is 5 s
// (x509_svid_ttl) before it expires. SPIRE's are valid for 150 s from its
// start: it prepares at half of that and activates at five sixths (within
// its 10 s rotation tick), before alpha's successor is due.
func TestRotationWaitsForPartners(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation takes minutes")
	}
	spire := startSPIREWith(t, spireServer(t), "spire.test",
		`  ca_ttl = "150s"
  default_x509_svid_ttl = "20s"
  default_jwt_svid_ttl = "20s"`)
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
	spireDoc := filepath.Join(dir, "spire.json")
	require.NoError(t, os.WriteFile(spireDoc, []byte(spire.cli("bundle", "show", "-format", "spiffe")), 0o600))
	delta.treaty("federation", "create", "-trustDomain", "spire.test", "-bundleEndpointURL", spire.fedURL,
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://spire.test/spire/server",
		"-trustDomainBundlePath", spireDoc, "-trustDomainBundleFormat", "spiffe")
	waitStatus(t, delta, "spire.test", func(st relationshipStatus) bool { return st.State == "healthy" })
	spireFirst := spireAuthorities(t, spire).Active.AuthorityID
	deltaHeldSPIRE := parseSPIFFE(t, "spire.test", delta.treaty("bundle", "list", "-id", "spiffe://spire.test", "-format", "spiffe"))
	delta.stop() // offline before alpha and SPIRE publish their next authorities

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

	// SPIRE, on the same ca_ttl, has activated its next authority while
	// delta is away: delta rejects what it signs until it comes back and
	// fetches.
	waitUntil(t, 30*time.Second, func() bool { return spireAuthorities(t, spire).Active.AuthorityID != spireFirst },
		"spire-server did not activate its next authority on schedule")
	spireSVID := mint(t, func(dir string) {
		spire.cli("x509", "mint", "-spiffeID", "spiffe://spire.test/workload", "-write", dir)
	})
	_, _, err = x509svid.Verify(spireSVID, parseSPIFFE(t, "spire.test", spire.cli("bundle", "show", "-format", "spiffe")))
	require.NoError(t, err, "SPIRE's own bundle verifies the SVID")
	_, _, err = x509svid.Verify(spireSVID, deltaHeldSPIRE)
	require.ErrorContains(t, err, "unknown authority", "delta, offline, holds a SPIRE bundle without the authority SPIRE activated")

	// Delta comes back, fetches, and only then alpha activates, before
	// the deadline; every partner verifies what the new authority signs.
	delta.start()
	waitUntil(t, 20*time.Second, func() bool { return x509Authorities(t, alpha).Active.AuthorityID == next }, "alpha did not activate once delta had the authority")
	require.True(t, time.Now().Before(first.expires(t).Add(-5*time.Second)), "activated at the deadline, not when delta came back")
	require.NotContains(t, alpha.log.String(), "at its deadline")
	alphaSVID := mint(t, func(dir string) {
		alpha.treaty("x509", "mint", "-spiffeID", "spiffe://alpha.test/workload", "-write", dir)
	})
	for td, p := range partners {
		_, _, err := x509svid.Verify(alphaSVID, parseSPIFFE(t, "alpha.test", p.treaty("bundle", "list", "-id", "spiffe://alpha.test", "-format", "spiffe")))
		require.NoError(t, err, "%s rejects an SVID signed by alpha's new authority", td)
	}

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
