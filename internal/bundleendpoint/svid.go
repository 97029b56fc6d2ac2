package bundleendpoint

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/ca"
)

// Signer issues the endpoint's X509-SVID.
type Signer interface {
	SignX509SVID(p ca.X509SVIDParams) ([]*x509.Certificate, error)
}

// svidCert is the https_spiffe serving certificate: an X509-SVID for the
// endpoint's SPIFFE ID from our own CA, renewed at half its lifetime and
// whenever the authorities change, swapped in without a restart.
type svidCert struct {
	id      spiffeid.ID
	signer  Signer
	now     func() time.Time
	current atomic.Pointer[tls.Certificate]
}

// renew signs a new SVID for a fresh key and starts serving it.
func (s *svidCert) renew() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate endpoint key: %w", err)
	}
	chain, err := s.signer.SignX509SVID(ca.X509SVIDParams{ID: s.id, PublicKey: key.Public()})
	if err != nil {
		return fmt.Errorf("sign endpoint SVID: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	s.current.Store(cert)
	return nil
}

// due reports whether the SVID has passed half its lifetime.
func (s *svidCert) due() bool {
	leaf := s.current.Load().Leaf
	half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	return !s.now().Before(half)
}

// nextCheck is when due may first be true.
func (s *svidCert) nextCheck() time.Duration {
	leaf := s.current.Load().Leaf
	half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	return max(half.Sub(s.now()), time.Second)
}

func (s *svidCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load(), nil
}
