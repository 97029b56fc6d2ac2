package bundleendpoint

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SVIDSource issues the endpoint's X509-SVID for https_spiffe. The local CA
// (ca.CA) is one.
type SVIDSource interface {
	// MintX509SVID returns a new X509-SVID for id: its chain, leaf
	// first, and its private key.
	MintX509SVID(id spiffeid.ID) (*x509svid.SVID, error)
}

// svidCert is the https_spiffe serving certificate: an X509-SVID for the
// endpoint's SPIFFE ID from our own CA, renewed at half its lifetime and
// whenever the authorities change, swapped in without a restart.
type svidCert struct {
	id      spiffeid.ID
	source  SVIDSource
	now     func() time.Time
	current atomic.Pointer[tls.Certificate]
}

// renew gets a new SVID with a fresh key and starts serving it.
func (s *svidCert) renew() error {
	svid, err := s.source.MintX509SVID(s.id)
	if err != nil {
		return fmt.Errorf("sign endpoint SVID: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
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

// chain returns the X509-SVID served now, leaf first.
func (s *svidCert) chain() []*x509.Certificate {
	cert := s.current.Load()
	if cert == nil {
		return nil
	}
	out := make([]*x509.Certificate, 0, len(cert.Certificate))
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil // renew built it from parsed certificates
		}
		out = append(out, c)
	}
	return out
}
