package config

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

func TestSignedBundles(t *testing.T) {
	fp := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	c, err := Parse([]byte("trust_domain: beta.test\nfederation:\n  signed_bundles_dir: /srv/partners\n  signed_bundle_pins:\n    alpha.test: "+fp+"\n"), "treaty.yaml")
	require.NoError(t, err)
	require.Equal(t, "/srv/partners", c.Federation.SignedBundlesDir)
	require.Equal(t, map[spiffeid.TrustDomain]string{spiffeid.RequireTrustDomainFromString("alpha.test"): fp}, c.Federation.SignedBundlePins)

	_, err = Parse([]byte("trust_domain: beta.test\nfederation:\n  signed_bundle_pins:\n    Alpha.test: "+fp+"\n    gamma.test: xyz\n"), "treaty.yaml")
	require.ErrorContains(t, err, "line 4: federation.signed_bundle_pins.Alpha.test")
	require.ErrorContains(t, err, `line 5: federation.signed_bundle_pins.gamma.test: "xyz" is not a bundle fingerprint`)
}
