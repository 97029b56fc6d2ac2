package cli

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// corpus is the bundle corpus of internal/bundle, dated around goldenNow.
const corpus = "../bundle/testdata/bundles/"

// onboardingData holds the onboarding check corpus.
const onboardingData = "../onboarding/testdata/"

var goldenNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestOfflineGolden pins the output of the offline commands, pretty and
// JSON, on the bundle corpus with a fixed clock. Run with -update to
// rewrite the goldens after a deliberate change.
func TestOfflineGolden(t *testing.T) {
	clock = func() time.Time { return goldenNow }
	t.Cleanup(func() { clock = time.Now })
	cases := []struct {
		golden string
		args   []string
		code   int
	}{
		{"inspect-good.txt", []string{"bundle", "inspect", corpus + "good.json"}, 0},
		{"inspect-good.json", []string{"bundle", "inspect", corpus + "good.json", "-output", "json"}, 0},
		{"inspect-pem.txt", []string{"bundle", "inspect", corpus + "good.pem"}, 0},
		{"inspect-leaf.txt", []string{"bundle", "inspect", corpus + "leaf.json"}, 1},
		{"validate-good.txt", []string{"bundle", "validate", corpus + "good.json", "-trustDomain", "alpha.test"}, 0},
		{"validate-expiring.txt", []string{"bundle", "validate", corpus + "expiring.json", "-trustDomain", "alpha.test"}, 0},
		{"validate-expiring-strict.txt", []string{"bundle", "validate", corpus + "expiring.json", "-trustDomain", "alpha.test", "-strict"}, 1},
		{"validate-leaf.txt", []string{"bundle", "validate", corpus + "leaf.json", "-trustDomain", "alpha.test"}, 1},
		{"validate-hint-ms.json", []string{"bundle", "validate", corpus + "hint-ms.json", "-trustDomain", "alpha.test", "-output", "json"}, 0},
		{"validate-mixed.json", []string{"bundle", "validate", corpus + "mixed-td.json", "-trustDomain", "alpha.test", "-output", "json"}, 0},
		{"convert-spiffe-pem.txt", []string{"bundle", "convert", "-in", corpus + "good.json", "-from", "spiffe", "-to", "pem"}, 0},
		{"convert-spiffe-jwks.txt", []string{"bundle", "convert", "-in", corpus + "good.json", "-from", "spiffe", "-to", "jwks"}, 0},
		{"convert-jwks-spiffe.txt", []string{"bundle", "convert", "-in", corpus + "jwks.json", "-from", "jwks", "-to", "spiffe", "-trustDomain", "alpha.test"}, 0},
		{"onboarding-check.txt", []string{"onboarding", "check", onboardingData + "check"}, 1},
		{"onboarding-check-bundle.txt", []string{"onboarding", "check", onboardingData + "check-bundle"}, 1},
		{"onboarding-check-good.json", []string{"onboarding", "check", onboardingData + "check/good-spiffe.yaml", onboardingData + "check/good-web.yaml", "-output", "json"}, 0},
		{"onboarding-check-class.txt", []string{"onboarding", "check", "-className", "dir-a", onboardingData + "check-dir"}, 0},
		{"convert-pem-spiffe.txt", []string{"bundle", "convert", "-in", corpus + "good.pem", "-from", "pem", "-to", "spiffe"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			stdout, stderr, code := run(t, "", tc.args...)
			require.Equal(t, tc.code, code, "stderr: %s", stderr)
			got := stdout
			if stderr != "" {
				got += "--- stderr\n" + stderr
			}
			path := filepath.Join("testdata", "golden", tc.golden)
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, string(want), got)
		})
	}
}

// TestConvertRoundTrip converts SPIFFE → PEM → SPIFFE and SPIFFE → JWKS →
// SPIFFE and checks that the keys the target format can carry survive.
func TestConvertRoundTrip(t *testing.T) {
	dir := t.TempDir()
	step := func(in, from, to string) string {
		out := filepath.Join(dir, from+"-"+to+"-"+filepath.Base(in))
		_, stderr, code := run(t, "", "bundle", "convert", "-in", in, "-from", from, "-to", to, "-out", out, "-trustDomain", "alpha.test")
		require.Zero(t, code, stderr)
		return out
	}
	inspect := func(path string) string {
		out, stderr, code := run(t, "", "bundle", "inspect", path, "-trustDomain", "alpha.test", "-output", "json")
		require.Zero(t, code, stderr)
		return out
	}
	pemOnly := step(step(corpus+"good.json", "spiffe", "pem"), "pem", "spiffe")
	jwksOnly := step(step(corpus+"good.json", "spiffe", "jwks"), "jwks", "spiffe")
	full := inspect(corpus + "good.json")
	for _, key := range []string{`"use": "x509-svid"`, `"use": "jwt-svid"`} {
		require.Contains(t, full, key)
	}
	require.Contains(t, inspect(pemOnly), `"use": "x509-svid"`)
	require.NotContains(t, inspect(pemOnly), `"use": "jwt-svid"`)
	require.Contains(t, inspect(jwksOnly), `"key_id": "key-1"`)
	require.NotContains(t, inspect(jwksOnly), `"use": "x509-svid"`)
	require.True(t, strings.Contains(inspect(pemOnly), `"sha256"`))
}
