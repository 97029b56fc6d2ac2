package federation

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/treatyhq/treaty/internal/profile"
)

// SVIDSource issues X509-SVIDs of the local trust domain; the local CA
// (ca.CA) is one.
type SVIDSource interface {
	MintX509SVID(id spiffeid.ID) (*x509svid.SVID, error)
}

// ClientSVID is the credential the fetcher presents when a partner's
// endpoint asks for a client certificate: an X509-SVID for
// profile.FederationClientID of the local trust domain, minted by source,
// renewed at half its lifetime. A treaty partner records with it which
// bundle we fetched (a receipt), so that its CA rotation can wait for us;
// other endpoints do not ask. ClientSVID is safe for concurrent use.
type ClientSVID struct {
	id     spiffeid.ID
	source SVIDSource
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	renewAt time.Time
}

// NewClientSVID returns the federation client credential of td; now nil
// means time.Now, log nil discards.
func NewClientSVID(td spiffeid.TrustDomain, source SVIDSource, now func() time.Time, log *slog.Logger) *ClientSVID {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ClientSVID{id: profile.FederationClientID(td), source: source, now: now, log: log}
}

// GetClientCertificate is a tls.Config.GetClientCertificate. When no SVID
// can be had, or the endpoint would not accept it, it presents none: the
// fetch goes ahead anonymously, as the SPIFFE Federation standard allows.
func (c *ClientSVID) GetClientCertificate(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cert, err := c.certificate()
	if err != nil {
		c.log.Warn("could not mint the federation client SVID; fetching anonymously", attrError, err)
		return &tls.Certificate{}, nil
	}
	if cri.SupportsCertificate(cert) != nil {
		return &tls.Certificate{}, nil
	}
	return cert, nil
}

func (c *ClientSVID) certificate() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil && c.now().Before(c.renewAt) {
		return c.current, nil
	}
	svid, err := c.source.MintX509SVID(c.id)
	if err != nil {
		return nil, fmt.Errorf("mint %s: %w", c.id, err)
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, crt := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, crt.Raw)
	}
	leaf := cert.Leaf
	c.current, c.renewAt = cert, leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2)
	return cert, nil
}
