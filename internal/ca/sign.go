package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// X509SVIDParams describes an X509-SVID to sign.
type X509SVIDParams struct {
	ID        spiffeid.ID
	PublicKey crypto.PublicKey
	// TTL is the requested lifetime; zero means the configured X509SVIDTTL.
	// The SVID never outlives the authority that signs it.
	TTL      time.Duration
	DNSNames []string
}

// SignX509SVID issues an X509-SVID (SPIFFE X509-SVID standard, section 4:
// one URI SAN, not a CA, digital signature key usage) signed by the active
// X.509 authority. It returns the leaf followed by the intermediates a peer
// needs to chain it to the bundle: the authority itself when an upstream CA
// signed it.
func (c *CA) SignX509SVID(p X509SVIDParams) ([]*x509.Certificate, error) {
	if p.ID.IsZero() || p.ID.TrustDomain() != c.cfg.TrustDomain {
		return nil, fmt.Errorf("SPIFFE ID %q is not in trust domain %q", p.ID, c.cfg.TrustDomain.Name())
	}
	c.mu.Lock()
	active := c.activeAuthority(datastore.KindX509)
	now := c.cfg.Now()
	c.mu.Unlock()
	if active == nil {
		return nil, fmt.Errorf("no active X.509 authority: %w", ErrFailedPrecondition)
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = c.cfg.X509SVIDTTL
	}
	notAfter := now.Add(ttl)
	if notAfter.After(active.NotAfter) {
		notAfter = active.NotAfter
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"treaty"}, SerialNumber: serial.String()},
		URIs:                  []*url.URL{p.ID.URL()},
		DNSNames:              p.DNSNames,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, active.cert, p.PublicKey, active.signer)
	if err != nil {
		return nil, fmt.Errorf("sign X509-SVID for %q: %w", p.ID, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse X509-SVID: %w", err)
	}
	chain := []*x509.Certificate{leaf}
	if c.cfg.Upstream != nil {
		chain = append(chain, active.chain...)
	}
	return chain, nil
}

// MintX509SVID issues an X509-SVID for id with a new ECDSA P-256 key and
// the configured lifetime, as SignX509SVID does: for a part of the server
// that needs an SVID of its own, such as the https_spiffe bundle endpoint.
func (c *CA) MintX509SVID(id spiffeid.ID) (*x509svid.SVID, error) {
	key, err := ECP256.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generate key for %q: %w", id, err)
	}
	chain, err := c.SignX509SVID(X509SVIDParams{ID: id, PublicKey: key.Public()})
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}

// activeAuthority returns the active authority of kind that holds a key.
// The caller holds c.mu.
func (c *CA) activeAuthority(kind datastore.AuthorityKind) *authority {
	for _, a := range c.authorities {
		if a.Kind == kind && a.State == datastore.StateActive && a.signer != nil {
			return a
		}
	}
	return nil
}
