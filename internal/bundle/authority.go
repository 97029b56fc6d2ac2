package bundle

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// timeLayout is how findings print instants.
const timeLayout = time.RFC3339

// CheckX509Authority returns an error saying why cert cannot be an X.509
// authority: it must be a CA certificate (SPIFFE X509-SVID §4.1) whose key
// usage, if set, includes keyCertSign (§4.3).
func CheckX509Authority(cert *x509.Certificate) error {
	if err := checkPublicKey(cert); err != nil {
		return err
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q is not a CA certificate (basic constraints CA:TRUE missing); an x509-svid authority must be a CA (SPIFFE X509-SVID §4.1)", cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q is a CA whose key usage lacks keyCertSign, so it may not sign SVIDs (SPIFFE X509-SVID §4.3)", cert.Subject)
	}
	return nil
}

// checkPublicKey refuses a certificate whose public key Go could not
// decode (an algorithm it does not know): it verifies nothing, and no JWK
// can describe it.
func checkPublicKey(cert *x509.Certificate) error {
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("certificate %q has a public key of an unsupported algorithm (%s); SPIFFE authorities use EC, RSA or Ed25519 keys", cert.Subject, cert.PublicKeyAlgorithm)
}

// ForeignTrustDomain returns the trust domain other than td that a SPIFFE
// ID in cert's URI SAN names, if any.
func ForeignTrustDomain(td spiffeid.TrustDomain, cert *x509.Certificate) (spiffeid.TrustDomain, bool) {
	for _, uri := range cert.URIs {
		id, err := spiffeid.FromURI(uri)
		if err == nil && id.TrustDomain() != td {
			return id.TrustDomain(), true
		}
	}
	return spiffeid.TrustDomain{}, false
}
