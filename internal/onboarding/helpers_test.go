package onboarding

import (
	"crypto/x509"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/testpki"
)

// caCert returns a new self-signed CA certificate whose URI SAN is uri.
func caCert(t testing.TB, uri string) *x509.Certificate { return testpki.CACert(t, uri) }

// bundleJSON returns a one-line SPIFFE bundle of trust domain td holding a
// CA certificate with the URI SAN uri.
func bundleJSON(t testing.TB, td, uri string) string {
	t.Helper()
	b := spiffebundle.New(spiffeid.RequireTrustDomainFromString(td))
	b.AddX509Authority(caCert(t, uri))
	b.SetSequenceNumber(7)
	data, err := bundle.Marshal(b)
	require.NoError(t, err)
	return string(data)
}
