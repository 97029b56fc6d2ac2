package ca

import (
	"fmt"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

// SignBundle returns the published bundle as a signed bundle file
// (signedbundle.Sign): the exact bytes the bundle endpoint serves, signed by
// every JWT authority of the bundle whose key the CA holds and that is
// neither tainted nor expired. The active key has been published since it
// was prepared, so partners holding an earlier bundle verify it; the
// authority kept after a rotation signs too, so a partner that missed the
// bundle which announced the new key still can; the prepared key signs so
// that the next bundle's holders can verify this one's successors. The
// X.509 authorities never sign: they sign certificates, and an upstream
// CA's roots are published without a key treaty holds.
func (c *CA) SignBundle() ([]byte, error) {
	c.mu.Lock()
	doc, published := c.document, c.published
	now := c.cfg.Now()
	var keys []signedbundle.Key
	for _, a := range c.authorities {
		if a.Kind != datastore.KindJWT || a.signer == nil || a.Tainted || !now.Before(a.NotAfter) || !published.HasJWTAuthority(a.ID) {
			continue
		}
		keys = append(keys, signedbundle.Key{ID: a.ID, Signer: a.signer})
	}
	c.mu.Unlock()
	seq, _ := published.SequenceNumber()
	if len(keys) == 0 {
		return nil, fmt.Errorf("no JWT authority of the bundle can sign it: %w", ErrFailedPrecondition)
	}
	return signedbundle.Sign(doc, c.cfg.TrustDomain, seq, keys)
}
