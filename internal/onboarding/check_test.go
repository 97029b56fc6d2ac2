package onboarding

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/testpki"
)

var checkNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestCheckFiles(t *testing.T) {
	cases := []struct {
		file     string
		status   finding.Severity
		severity finding.Severity
		line     int
		phrase   string
	}{
		{"good-spiffe.yaml", finding.Pass, "", 0, ""},
		{"good-web.yaml", finding.Pass, "", 0, ""},
		{"expiring-bundle.yaml", finding.Warn, finding.Warn, 8, "ask the partner for a current bundle"},
		{"http-url.yaml", finding.Fail, finding.Fail, 2, "uses http://"},
		{"no-profile.yaml", finding.Fail, finding.Fail, 1, "bundleEndpointProfile is required"},
		{"spiffe-no-bundle.yaml", finding.Fail, finding.Fail, 1, "https_spiffe without trustDomainBundle"},
		{"wrong-endpoint-td.yaml", finding.Fail, finding.Fail, 7, "is not in trust domain alpha.test"},
		{"leaf-bundle.yaml", finding.Fail, finding.Fail, 8, "not a CA certificate"},
		{"web-endpointid.yaml", finding.Fail, finding.Fail, 5, "only used with type https_spiffe"},
		{"unknown-key.yaml", finding.Fail, finding.Fail, 2, "did you mean bundleEndpointURL"},
		{"not-yaml.yaml", finding.Fail, finding.Fail, 2, "not valid YAML"},
	}
	for _, tc := range cases {
		t.Run(string(tc.status)+"/"+tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "check", tc.file)
			r, err := Check([]string{path}, CheckOptions{Now: checkNow})
			require.NoError(t, err)
			require.Len(t, r.Files, 1)
			require.Equal(t, tc.status, r.Files[0].Status, "%v", r.Findings)
			if tc.phrase == "" {
				require.Empty(t, r.Findings)
				return
			}
			var hit bool
			for _, f := range r.Findings {
				if f.Severity == tc.severity && f.Line == tc.line && f.Path == path && strings.Contains(f.Message, tc.phrase) {
					hit = true
				}
			}
			require.True(t, hit, "no %s at line %d containing %q in %v", tc.severity, tc.line, tc.phrase, r.Findings)
		})
	}
}

// TestCheckBootstrapBundle: trustDomainBundle is checked like any bundle
// (SPIFFE Trust Domain and Bundle §4.2, X509-SVID §4 and §6.2), at its own
// line, and expired bootstrap material is an error because a new partner
// cannot bootstrap from it.
func TestCheckBootstrapBundle(t *testing.T) {
	cases := []struct {
		file     string
		status   finding.Severity
		severity finding.Severity
		check    finding.CheckID
		phrases  []string
	}{
		{"expired.yaml", finding.Fail, finding.Fail, CheckBundleExpiry, []string{`authority "CN=spiffe://expired.test,O=corpus" expired at 2025-01-01T00:00:00Z (365 days ago)`, "a new partner cannot bootstrap from it", "the partner must publish a fresh bundle"}},
		{"future.yaml", finding.Warn, finding.Warn, CheckBundleExpiry, []string{"is not valid until 2027-01-01T00:00:00Z", "check the clocks"}},
		{"foreign.yaml", finding.Warn, finding.Warn, CheckBundle, []string{`keys[1] (x509-svid): certificate "CN=spiffe://other.test,O=corpus" names trust domain "other.test"`, `kept as an authority of "foreign.test"`}},
		{"ignored.yaml", finding.Warn, finding.Warn, CheckBundle, []string{`keys[1] (enc) ignored: unknown use "enc"`, `keys[2] (x509-svid) ignored: no certificate in "x5c"`}},
	}
	for _, tc := range cases {
		t.Run(string(tc.status)+"/"+tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "check-bundle", tc.file)
			r, err := Check([]string{path}, CheckOptions{Now: checkNow})
			require.NoError(t, err)
			require.Equal(t, tc.status, r.Files[0].Status, "%v", r.Findings)
			for _, phrase := range tc.phrases {
				var hit bool
				for _, f := range r.Findings {
					if f.Check == tc.check && f.Severity == tc.severity && f.Line == 8 && strings.Contains(f.Message, phrase) {
						hit = true
					}
				}
				require.True(t, hit, "no %s %s at line 8 containing %q in %v", tc.severity, tc.check, phrase, r.Findings)
			}
		})
	}
}

func TestCheckDirectory(t *testing.T) {
	dir := filepath.Join("testdata", "check-dir")
	t.Run("fail/duplicate trust domain and disagreeing classNames", func(t *testing.T) {
		r, err := Check([]string{dir}, CheckOptions{Now: checkNow})
		require.NoError(t, err)
		require.Equal(t, 2, r.Errors(), "%v", r.Findings)
		joined := ""
		for _, f := range r.Findings {
			joined += f.String() + "\n"
		}
		require.Contains(t, joined, "a.yaml:2: error: trust domain web.example is also defined in "+filepath.Join(dir, "b.yaml"))
		require.Contains(t, joined, `a.yaml: warning: className "dir-a": the files disagree (dir-a, dir-b)`)
		require.Equal(t, finding.Pass, r.Files[2].Status, "c.yaml is fine")
	})
	t.Run("ok/className picks one file", func(t *testing.T) {
		r, err := Check([]string{dir}, CheckOptions{ClassName: "dir-a", Now: checkNow})
		require.NoError(t, err)
		require.Zero(t, r.Errors(), "%v", r.Findings)
		require.Equal(t, finding.Skip, r.Files[1].Status)
		require.Contains(t, r.Findings[0].String(), `b.yaml: warning: skipped: its className "dir-b" is not "dir-a"`)
	})
	t.Run("fail/missing path", func(t *testing.T) {
		_, err := Check([]string{"testdata/nope"}, CheckOptions{})
		require.ErrorContains(t, err, "cannot read testdata/nope")
	})
}

// TestExamplesPassCheck keeps the shipped AGNTCY-style examples valid.
func TestExamplesPassCheck(t *testing.T) {
	r, err := Check([]string{filepath.Join("..", "..", "examples", "onboarding", "federation")}, CheckOptions{ClassName: "dir-spire"})
	require.NoError(t, err)
	require.Zero(t, r.Errors(), "%v", r.Findings)
	require.Len(t, r.Files, 3, "the templates (leading dot) are not read")
	for _, f := range r.Files {
		require.Equal(t, finding.Pass, f.Status, "%s: %v", f.Path, r.Findings)
	}
}

// TestCheckBundleExpiryIsRelativeToLifetime: a partner's fresh bundle from
// a server with 30-day authorities is no cause for a warning; one whose
// newest authority is past five sixths of its life (when treaty has handed
// over to its successor) is, at the trustDomainBundle line, in a bare spec
// and in a whole resource alike.
func TestCheckBundleExpiryIsRelativeToLifetime(t *testing.T) {
	const month = 30 * 24 * time.Hour
	bundleOf := func(ages ...time.Duration) string {
		b := spiffebundle.New(spiffeid.RequireTrustDomainFromString("partner.example"))
		for _, age := range ages {
			b.AddX509Authority(testpki.CACertValid(t, "spiffe://partner.example", checkNow.Add(-age), checkNow.Add(month-age)))
		}
		b.SetRefreshHint(5 * time.Minute)
		data, err := bundle.Marshal(b)
		require.NoError(t, err)
		return string(data)
	}
	bare := func(doc string) string {
		return lines("trustDomain: partner.example", "bundleEndpointURL: https://spire.partner.example", "bundleEndpointProfile:",
			"  type: https_spiffe", "  endpointSPIFFEID: spiffe://partner.example/spire/server", "trustDomainBundle: '"+doc+"'")
	}
	resource := func(doc string) string {
		return lines("apiVersion: spire.spiffe.io/v1alpha1", "kind: ClusterFederatedTrustDomain", "metadata: {name: partner}", "spec:",
			"  trustDomain: partner.example", "  bundleEndpointURL: https://spire.partner.example", "  bundleEndpointProfile:",
			"    type: https_spiffe", "    endpointSPIFFEID: spiffe://partner.example/spire/server", "  trustDomainBundle: '"+doc+"'")
	}
	for _, tc := range []struct {
		name string
		file string
		line int // of the expiry warning; 0: none
	}{
		{"ok/fresh 30-day authority", bare(bundleOf(time.Hour)), 0},
		{"ok/old authority with its published successor", bare(bundleOf(26*24*time.Hour, 11*24*time.Hour)), 0},
		{"warn/past five sixths, bare spec", bare(bundleOf(26 * 24 * time.Hour)), 6},
		{"warn/past five sixths, resource", resource(bundleOf(26 * 24 * time.Hour)), 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "partner.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tc.file), 0o600))
			r, err := Check([]string{path}, CheckOptions{Now: checkNow})
			require.NoError(t, err)
			var got []Finding
			for _, f := range r.Findings {
				if f.Check == CheckBundleExpiry {
					got = append(got, f)
				}
			}
			if tc.line == 0 {
				require.Empty(t, got)
				return
			}
			require.Len(t, got, 1, "%v", got)
			require.Equal(t, tc.line, got[0].Line)
			require.Contains(t, got[0].Message, "4 days of its 30-day lifetime left")
			require.Contains(t, got[0].Message, "ask the partner for a current bundle")
		})
	}
}
