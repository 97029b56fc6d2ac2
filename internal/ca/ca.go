// Package ca runs the local trust domain's certificate authority: its X.509
// authorities and JWT signing keys, their lifecycle (prepared, active, old,
// removed), and the local bundle built from them with a spiffe_sequence that
// never goes backwards.
package ca

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
)

// Defaults for zero Config fields.
const (
	DefaultCATTL       = 720 * time.Hour
	DefaultRefreshHint = 5 * time.Minute
	DefaultX509SVIDTTL = time.Hour
	DefaultJWTSVIDTTL  = 5 * time.Minute
)

// MinPublishedHints is how many refresh hints a prepared authority is
// published before automatic rotation activates it, so that every partner
// polling at the hint has fetched it before anything it signs is seen. The
// SPIFFE Federation standard, section 4.1, recommends 3 to 5 times the
// refresh hint.
const MinPublishedHints = 3

// Errors that callers map to API status codes.
var (
	// ErrFailedPrecondition means the operation does not fit the current
	// lifecycle state (nothing prepared, authority not old, ...).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnknownAuthority means no authority has the given ID.
	ErrUnknownAuthority = errors.New("unknown authority")
)

// ErrConflict means another replica changed the authorities while this one
// was changing them: nothing was written, the CA has read them again, and
// the operation may simply be run again.
var ErrConflict = errors.New("another replica changed the authorities at the same time; nothing was changed, run it again")

// Store is the persistence the CA needs.
type Store interface {
	ListAuthorities(ctx context.Context) ([]datastore.Authority, error)
	AuthorityRevision(ctx context.Context) (uint64, error)
	CommitAuthorities(ctx context.Context, change datastore.AuthorityChange) error
	LocalBundle(ctx context.Context) (datastore.Bundle, error)
}

// KeyStore holds the authorities' private keys: keystore.Store (a key
// directory, one server) or keystore.Sealed (sealed in the datastore,
// shared by replicas).
type KeyStore interface {
	Save(name string, key crypto.Signer) error
	Load(name string) (crypto.Signer, error)
	Delete(name string) error
	List() ([]string, error)
	// Path names where a key lives, for messages.
	Path(name string) string
}

// Config configures a CA. Zero fields take the documented defaults.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	Keys        KeyStore
	// KeyType is used for new X.509 and JWT keys; default ECP256.
	KeyType KeyType
	// CATTL is the lifetime of new authorities; default 720h.
	CATTL time.Duration
	// RefreshHint is published in the bundle; default 5m.
	RefreshHint time.Duration
	// X509SVIDTTL is the longest X.509-SVID lifetime; default 1h. The CA
	// activates its successor before the active authority has less left.
	X509SVIDTTL time.Duration
	// JWTSVIDTTL is the longest JWT-SVID lifetime; default 5m.
	JWTSVIDTTL time.Duration
	// Shared says that other replicas share the store (and the keys): the
	// CA then reads the authorities again before each periodic rotation,
	// besides whenever Reload is called.
	Shared bool
	// Receipts, when set, tells which partners fetched which local bundle:
	// automatic activation of a prepared X.509 authority then also waits
	// until every partner with a receipt was served a bundle holding it,
	// until the active authority's deadline (see Rotate).
	Receipts Receipts
	// Upstream, when set, signs the X.509 authorities.
	Upstream *Upstream
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.KeyType == "" {
		c.KeyType = ECP256
	}
	if c.CATTL == 0 {
		c.CATTL = DefaultCATTL
	}
	if c.RefreshHint == 0 {
		c.RefreshHint = DefaultRefreshHint
	}
	if c.X509SVIDTTL == 0 {
		c.X509SVIDTTL = DefaultX509SVIDTTL
	}
	if c.JWTSVIDTTL == 0 {
		c.JWTSVIDTTL = DefaultJWTSVIDTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// CA is the local certificate authority. It is safe for concurrent use.
type CA struct {
	cfg Config
	log *slog.Logger

	mu          sync.Mutex
	authorities []*authority
	published   *spiffebundle.Bundle
	document    []byte
	// revision is the stored authority revision the in-memory state was
	// read at; a change commits only if it is still the stored one.
	revision uint64
	changed  chan struct{}
	// firstSeq holds, per prepared authority stored without its
	// PublishedSequence, the sequence counted from instead; waiting is, per
	// kind, what activation last logged it waits for.
	firstSeq map[string]uint64
	waiting  map[datastore.AuthorityKind]string

	confirm confirmer
}

// New loads the CA's state from the store and key directory, creating the
// first X.509 authority and JWT key on first start, and brings the lifecycle
// up to date. It refuses to start when an active or prepared authority's key
// is missing or does not match.
func New(ctx context.Context, cfg Config) (*CA, error) {
	cfg.setDefaults()
	if cfg.TrustDomain.IsZero() || cfg.Store == nil || cfg.Keys == nil {
		return nil, errors.New("ca: trust domain, store and key store are required")
	}
	c := &CA{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}), firstSeq: map[string]uint64{}, waiting: map[datastore.AuthorityKind]string{}}
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	if err := c.removeOrphanKeys(); err != nil {
		return nil, err
	}
	if err := c.Rotate(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CA) load(ctx context.Context) error {
	st, err := c.read(ctx)
	if err != nil {
		return err
	}
	c.authorities, c.published, c.document, c.revision = st.authorities, st.published, st.document, st.revision
	return nil
}

// stored is the CA's state as read from the store.
type stored struct {
	authorities []*authority
	published   *spiffebundle.Bundle
	document    []byte
	revision    uint64
}

// read reads the authorities, their keys and the local bundle. The
// revision is read first: a change another replica commits meanwhile makes
// this replica's next change fail and be decided again, never succeed on
// stale authorities.
func (c *CA) read(ctx context.Context) (stored, error) {
	var st stored
	var err error
	if st.revision, err = c.cfg.Store.AuthorityRevision(ctx); err != nil {
		return st, fmt.Errorf("load authorities: %w", err)
	}
	if st.published, st.document, err = c.readBundle(ctx); err != nil {
		return st, err
	}
	recs, err := c.cfg.Store.ListAuthorities(ctx)
	if err != nil {
		return st, fmt.Errorf("load authorities: %w", err)
	}
	for _, rec := range recs {
		a, err := decode(rec)
		if err != nil {
			return st, err
		}
		if err := c.attachKey(a); err != nil {
			return st, err
		}
		st.authorities = append(st.authorities, a)
	}
	return st, nil
}

func (c *CA) readBundle(ctx context.Context) (*spiffebundle.Bundle, []byte, error) {
	stored, err := c.cfg.Store.LocalBundle(ctx)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return spiffebundle.New(c.cfg.TrustDomain), nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("load local bundle: %w", err)
	case stored.TrustDomain != c.cfg.TrustDomain:
		return nil, nil, fmt.Errorf("the datastore belongs to trust domain %q, not %q: use another data_dir (or database) or the original trust_domain", stored.TrustDomain.Name(), c.cfg.TrustDomain.Name())
	}
	res, err := bundle.Parse(c.cfg.TrustDomain, stored.Document, bundle.Options{})
	if err != nil {
		return nil, nil, fmt.Errorf("stored local bundle: %w", err)
	}
	res.Bundle.SetSequenceNumber(stored.Sequence)
	return res.Bundle, stored.Document, nil
}

// Reload reads the authorities and the local bundle again, for when
// another replica sharing the datastore may have changed them, and
// publishes what changed. The published bundle never goes back to a lower
// sequence: a stored bundle older than the one in memory is left alone.
func (c *CA) Reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(ctx)
}

// current brings the in-memory state up to the store before an operator's
// change is decided, when other replicas share the store: deciding on
// stale authorities would refuse (or allow) what the store no longer
// holds. The caller holds c.mu.
func (c *CA) current(ctx context.Context) error {
	if !c.cfg.Shared {
		return nil
	}
	if err := c.reloadLocked(ctx); err != nil {
		return fmt.Errorf("read the authorities other replicas may have changed: %w", err)
	}
	return nil
}

func (c *CA) reloadLocked(ctx context.Context) error {
	st, err := c.read(ctx)
	if err != nil {
		return err
	}
	if st.revision < c.revision {
		return nil
	}
	seq, _ := st.published.SequenceNumber()
	cur, _ := c.published.SequenceNumber()
	if seq < cur {
		return fmt.Errorf("the stored local bundle has sequence %d, below the %d published here: %w", seq, cur, datastore.ErrSequenceRegression)
	}
	if st.revision == c.revision && seq == cur {
		return nil
	}
	if seq != cur {
		c.log.Info("local bundle updated by another replica", attrSequence, seq)
	}
	c.authorities, c.published, c.document, c.revision = st.authorities, st.published, st.document, st.revision
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

// attachKey loads the private key of a stored authority and checks it
// matches. A missing key is fatal for an authority that signs or will sign,
// and only a warning for an old one.
func (c *CA) attachKey(a *authority) error {
	if a.State == datastore.StateExternal {
		return nil
	}
	key, err := c.cfg.Keys.Load(a.KeyName)
	if err == nil && !publicKeysEqual(key.Public(), a.public) {
		err = errors.New("the key file does not match the authority's public key")
	}
	if err == nil {
		a.signer = key
		return nil
	}
	if a.State == datastore.StateOld {
		c.log.Warn("old authority has no usable key; it stays published until it expires",
			attrKind, a.Kind, attrAuthorityID, a.ID, attrError, err)
		return nil
	}
	return fmt.Errorf("%s %s authority %s: key %s: %w; the data directory is damaged or incomplete (restore it from backup)",
		a.State, a.Kind, a.ID, c.cfg.Keys.Path(a.KeyName), err)
}

// removeOrphanKeys deletes key files that no authority refers to: keys
// written just before a crash interrupted the transaction recording them.
func (c *CA) removeOrphanKeys() error {
	names, err := c.cfg.Keys.List()
	if err != nil {
		return err
	}
	inUse := map[string]bool{}
	for _, a := range c.authorities {
		inUse[a.KeyName] = true
	}
	for _, name := range names {
		if !inUse[name] {
			c.log.Info("removing unreferenced key file", attrKey, name)
			if err := c.cfg.Keys.Delete(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// Bundle returns a copy of the published local bundle.
func (c *CA) Bundle() *spiffebundle.Bundle {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.published.Clone()
}

// Document returns the published bundle as Marshal encodes it and its
// sequence number. The bytes must not be modified.
func (c *CA) Document() ([]byte, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq, _ := c.published.SequenceNumber()
	return c.document, seq
}

// Changed returns a channel that is closed the next time the published
// bundle or the authorities change.
func (c *CA) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// TrustDomain returns the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.cfg.TrustDomain }

// IsTainted reports whether the authority with the given ID is tainted.
func (c *CA) IsTainted(kind datastore.AuthorityKind, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.find(kind, id)
	return a != nil && a.Tainted
}

func (c *CA) find(kind datastore.AuthorityKind, id string) *authority {
	for _, a := range c.authorities {
		if a.Kind == kind && a.ID == id {
			return a
		}
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}
