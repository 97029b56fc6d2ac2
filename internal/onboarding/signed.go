package onboarding

import (
	"context"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

// signedBundle takes a trustDomainBundle that is a signed bundle
// (treaty bundle show -format spiffe -sign): its bundle bootstraps the
// relationship once the reconciler has verified it (verifySigned).
func (b *builder) signedBundle(v value) {
	s, err := signedbundle.Parse([]byte(v.text))
	if err != nil {
		b.ps.add(v.line, "trustDomainBundle: %v", err)
		return
	}
	if s.TrustDomain != b.rel.TrustDomain {
		b.ps.add(v.line, "trustDomainBundle is signed for %s, not %s", s.TrustDomain.Name(), b.rel.TrustDomain.Name())
		return
	}
	for _, w := range s.Warnings {
		b.warnings = append(b.warnings, bundleWarningPrefix+w)
	}
	b.rel.TrustDomainBundle, b.signed = s.Bundle, s
	b.bundleText, b.bundleLine = s.Document, v.line
}

// verifySigned returns boot, the bootstrap bundle of f's signed
// trustDomainBundle, if it may be stored: signed by a JWT authority of the
// bundle held for its trust domain, or with the trustDomainBundleSHA256
// fingerprint while none is held, and not older (docs/offline-federation.md).
// A refused bundle is logged once and not stored, an unchanged or older one
// (polling found a newer one since, as for a plain trustDomainBundle) not
// stored either; the relationship itself is applied either way.
func (r *Reconciler) verifySigned(ctx context.Context, f File, boot *datastore.Bundle) (*datastore.Bundle, error) {
	td := f.Relationship.TrustDomain
	held, err := r.heldBundle(ctx, f)
	if err != nil {
		return nil, err
	}
	decision, _, err := f.signed.Accept(held, f.pin)
	if errors.Is(err, signedbundle.ErrRollback) {
		// The relationship's polling fetched a newer bundle since the
		// file was written: normal, as for a plain trustDomainBundle.
		r.log.Debug("signed trustDomainBundle older than the bundle held; not stored", attrTrustDomain, td.Name(), attrFile, f.Path)
		return nil, nil //nolint:nilnil // nothing to store is the answer
	}
	if err != nil {
		if r.first("signed:" + f.Path + ":" + err.Error()) {
			r.log.Warn("signed trustDomainBundle refused; the relationship is applied without it",
				attrTrustDomain, td.Name(), attrFile, f.Path, attrError, err)
		}
		return nil, nil //nolint:nilnil // nothing to store is the answer
	}
	if decision == signedbundle.Unchanged {
		return nil, nil //nolint:nilnil // nothing to store is the answer
	}
	return boot, nil
}

// heldBundle returns the bundle held for f's trust domain, nil when none
// is (Accept then asks for the pin).
func (r *Reconciler) heldBundle(ctx context.Context, f File) (*spiffebundle.Bundle, error) {
	td := f.Relationship.TrustDomain
	rec, err := r.cfg.Store.FederatedBundle(ctx, td)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil //nolint:nilnil // none held
	}
	if err != nil {
		return nil, fmt.Errorf("read the bundle held for %s: %w", td.Name(), err)
	}
	res, err := bundle.Parse(td, rec.Document, bundle.Options{})
	if err != nil {
		return nil, fmt.Errorf("the bundle held for %s: %w", td.Name(), err)
	}
	return res.Bundle, nil
}
