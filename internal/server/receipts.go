package server

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
)

// partnerBundles gives the bundle endpoint the X.509 authorities of the
// bundles stored for partners, with which it authenticates their
// federation clients.
type partnerBundles struct {
	store datastore.Store
	local spiffeid.TrustDomain
}

func (p partnerBundles) X509Authorities(ctx context.Context, td spiffeid.TrustDomain) ([]*x509.Certificate, error) {
	if td == p.local {
		return nil, fmt.Errorf("%s is the local trust domain, not a partner: %w", td.Name(), datastore.ErrNotFound)
	}
	b, err := p.store.FederatedBundle(ctx, td)
	if err != nil {
		return nil, err
	}
	res, err := bundle.Parse(td, b.Document, bundle.Options{})
	if err != nil {
		return nil, fmt.Errorf("stored bundle of %s: %w", td.Name(), err)
	}
	return res.Bundle.X509Authorities(), nil
}
