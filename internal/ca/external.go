package ca

import (
	"context"
	"crypto"
	"crypto/sha1" //nolint:gosec // SHA-1 is what RFC 5280 uses for key identifiers, not for security.
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// ExternalJWTKey is a JWT public key appended to the local bundle.
type ExternalJWTKey struct {
	KeyID     string
	PublicKey crypto.PublicKey
	ExpiresAt time.Time
}

// Append publishes authorities that treaty holds no key for (SPIRE's
// AppendBundle): for example the CA of a previous deployment whose SVIDs are
// still in use. Certificates already published and keys with a known ID are
// skipped. Appended authorities are removed when they expire; JWT keys
// without an expiry stay until revoked by removing them from the store.
func (c *CA) Append(ctx context.Context, certs []*x509.Certificate, keys []ExternalJWTKey) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.current(ctx); err != nil {
		return err
	}
	ch := c.begin()
	for _, cert := range certs {
		if err := ch.appendX509(cert); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := ch.appendJWT(k); err != nil {
			return err
		}
	}
	return ch.commit(ctx)
}

func (ch *change) appendX509(cert *x509.Certificate) error {
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return fmt.Errorf("certificate %q is not a CA certificate: %w", cert.Subject, ErrUnknownAuthority)
	}
	id := hex.EncodeToString(cert.SubjectKeyId)
	if id == "" {
		sum := sha1.Sum(cert.RawSubjectPublicKeyInfo) //nolint:gosec // key identifier, see import
		id = hex.EncodeToString(sum[:])
	}
	if ch.find(datastore.KindX509, id) != nil {
		return nil
	}
	a, err := x509Record(cert, nil, nil)
	if err != nil {
		return err
	}
	a.ID, a.State, a.PreparedAt = id, datastore.StateExternal, ch.now
	ch.next = append(ch.next, a)
	ch.touch(a, "appended", "requested by operator")
	return nil
}

func (ch *change) appendJWT(k ExternalJWTKey) error {
	if k.KeyID == "" {
		return fmt.Errorf("a JWT key needs a key ID: %w", ErrUnknownAuthority)
	}
	if ch.find(datastore.KindJWT, k.KeyID) != nil {
		return nil
	}
	pub, err := x509.MarshalPKIXPublicKey(k.PublicKey)
	if err != nil {
		return fmt.Errorf("JWT key %q: %w", k.KeyID, err)
	}
	expires := k.ExpiresAt
	if expires.IsZero() {
		expires = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) // kept until removed
	}
	a := &authority{
		Authority: datastore.Authority{Kind: datastore.KindJWT, ID: k.KeyID, State: datastore.StateExternal,
			PublicKey: pub, NotBefore: ch.now, NotAfter: expires, PreparedAt: ch.now},
		public: k.PublicKey,
	}
	ch.next = append(ch.next, a)
	ch.touch(a, "appended", "requested by operator")
	return nil
}

// Run drives time-based rotation until ctx is done, checking every interval
// (default: a quarter of the refresh hint, at most one minute). Errors are
// logged and retried at the next check: a failed rotation leaves the
// previous state intact.
func (c *CA) Run(ctx context.Context) error {
	interval := min(c.cfg.RefreshHint/4, time.Minute)
	interval = max(interval, time.Second)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if c.cfg.Shared {
			if err := c.Reload(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("reading the authorities other replicas changed failed; will retry", attrError, err)
			}
		}
		if err := c.Rotate(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("rotation failed; will retry", attrError, err)
		}
		timer.Reset(interval)
	}
}
