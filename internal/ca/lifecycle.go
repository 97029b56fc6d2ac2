package ca

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Rotate advances the lifecycle of both kinds of authority to the current
// time and publishes the result:
//   - an active authority that expired becomes old; expired old, prepared
//     and external authorities are removed;
//   - with no active authority, the prepared one (or a new one, on first
//     start) is activated at once;
//   - at half its lifetime, the active authority gets a prepared successor,
//     published in the bundle;
//   - at five sixths of its lifetime, the successor is activated, but only
//     once it has been published for MinPublishedHints refresh hints, unless
//     the active authority would otherwise outlive its ability to sign SVIDs
//     of full lifetime;
//   - with Config.Receipts, a prepared successor (X.509 or JWT; not an
//     X.509 one an upstream CA signs, partners trust its root already)
//     also waits until every partner with a receipt was served a bundle
//     holding it; at the
//     deadline (the active authority could no longer sign SVIDs of full
//     lifetime) it is activated anyway, and the partners that lack it are
//     logged as an error. Partners without receipts are unknown and do not
//     hold it back.
//
// When another replica changed the authorities meanwhile, Rotate reads
// them again and decides once more.
func (c *CA) Rotate(ctx context.Context) error {
	receipts, err := c.receiptsIfPrepared(ctx)
	if err != nil {
		// Partners become unknown: the rule without receipts applies.
		c.log.Warn("could not read partners' receipts; rotating as if there were none", attrError, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err = c.rotateLocked(ctx, receipts)
	if errors.Is(err, ErrConflict) {
		err = c.rotateLocked(ctx, receipts)
	}
	return err
}

func (c *CA) rotateLocked(ctx context.Context, receipts []datastore.Receipt) error {
	ch := c.begin()
	ch.receipts = receipts
	for _, kind := range []datastore.AuthorityKind{datastore.KindX509, datastore.KindJWT} {
		if err := ch.rotate(kind); err != nil {
			return ch.abort(err)
		}
	}
	return ch.commit(ctx)
}

func (ch *change) rotate(kind datastore.AuthorityKind) error {
	ch.expire(kind)
	if ch.inState(kind, datastore.StateActive) == nil {
		prepared := ch.inState(kind, datastore.StatePrepared)
		var err error
		if prepared == nil {
			if prepared, err = ch.prepare(kind, "no authority yet"); err != nil {
				return err
			}
		}
		ch.activate(prepared, "no active authority")
	}
	active := ch.inState(kind, datastore.StateActive)
	lifetime := active.NotAfter.Sub(active.NotBefore)
	prepared := ch.inState(kind, datastore.StatePrepared)
	if prepared == nil && !ch.now.Before(active.NotBefore.Add(lifetime/2)) {
		_, err := ch.prepare(kind, "active authority reached half of its lifetime")
		return err
	}
	if prepared != nil {
		ch.maybeActivate(active, prepared, lifetime)
	}
	return nil
}

func (ch *change) expire(kind datastore.AuthorityKind) {
	for _, a := range append([]*authority(nil), ch.next...) {
		if a.Kind != kind || ch.now.Before(a.NotAfter) {
			continue
		}
		if a.State == datastore.StateActive {
			a.State, a.DeactivatedAt = datastore.StateOld, ch.now
			ch.c.log.Error("active authority expired before it was rotated; is the server clock right?",
				attrKind, a.Kind, attrAuthorityID, a.ID, attrExpiresAt, a.NotAfter)
		}
		ch.remove(a, "removed", "expired")
	}
}

func (ch *change) maybeActivate(active, prepared *authority, lifetime time.Duration) {
	cfg := ch.c.cfg
	svidTTL := cfg.X509SVIDTTL
	if active.Kind == datastore.KindJWT {
		svidTTL = cfg.JWTSVIDTTL
	}
	published := ch.now.Sub(prepared.PreparedAt)
	due := !ch.now.Before(active.NotBefore.Add(lifetime * 5 / 6))
	spread := published >= MinPublishedHints*cfg.RefreshHint
	urgent := !ch.now.Add(svidTTL).Before(active.NotAfter)
	var cov Coverage
	if ch.c.partnersNeed(prepared) {
		cov = ch.c.coverage(prepared, ch.receipts)
	}
	switch {
	case due && spread && len(cov.Lack) == 0:
		ch.activate(prepared, "active authority reached five sixths of its lifetime")
	case urgent:
		if !spread {
			ch.c.log.Warn("activating an authority published for less than the safe number of refresh hints; partners may reject SVIDs it signs until they refresh",
				attrKind, prepared.Kind, attrAuthorityID, prepared.ID, "published_for", published.String())
		}
		if len(cov.Lack) > 0 {
			ch.c.log.Error("activating the next authority at its deadline although partners have not fetched it; they will reject SVIDs it signs until they fetch the bundle",
				attrKind, prepared.Kind, attrAuthorityID, prepared.ID, attrPartners, strings.Join(cov.Lacking(), ","), attrSequence, cov.Sequence)
		}
		ch.activate(prepared, "active authority about to expire")
	case due && spread:
		ch.c.waitFor(prepared, cov)
	}
}

// AuthorityInfo describes one authority for the LocalAuthority API.
type AuthorityInfo struct {
	ID           string
	State        datastore.AuthorityState
	Tainted      bool
	NotBefore    time.Time
	ExpiresAt    time.Time
	PreparedAt   time.Time
	ActivatedAt  time.Time
	UpstreamSKID string
}

// State is the active, prepared and most recent old authority of one kind;
// absent ones are nil.
type State struct {
	Active, Prepared, Old *AuthorityInfo
}

// State returns the lifecycle state of the authorities of kind.
func (c *CA) State(kind datastore.AuthorityKind) State {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.begin()
	return State{
		Active:   info(ch.inState(kind, datastore.StateActive)),
		Prepared: info(ch.inState(kind, datastore.StatePrepared)),
		Old:      info(ch.inState(kind, datastore.StateOld)),
	}
}

// Authorities returns every authority of kind, oldest first.
func (c *CA) Authorities(kind datastore.AuthorityKind) []AuthorityInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []AuthorityInfo
	for _, a := range c.authorities {
		if a.Kind == kind {
			out = append(out, *info(a))
		}
	}
	return out
}

func info(a *authority) *AuthorityInfo {
	if a == nil {
		return nil
	}
	return &AuthorityInfo{
		ID: a.ID, State: a.State, Tainted: a.Tainted, NotBefore: a.NotBefore, ExpiresAt: a.NotAfter,
		PreparedAt: a.PreparedAt, ActivatedAt: a.ActivatedAt, UpstreamSKID: a.UpstreamSKID,
	}
}

// Prepare creates a new authority of kind and publishes it in the bundle
// without using it. It fails if one is prepared already.
func (c *CA) Prepare(ctx context.Context, kind datastore.AuthorityKind) (AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.current(ctx); err != nil {
		return AuthorityInfo{}, err
	}
	ch := c.begin()
	if p := ch.inState(kind, datastore.StatePrepared); p != nil {
		return AuthorityInfo{}, fmt.Errorf("%s authority %s is already prepared (since %s); activate it first: %w",
			KindName(kind), p.ID, p.PreparedAt.UTC().Format(time.RFC3339), ErrFailedPrecondition)
	}
	a, err := ch.prepare(kind, "requested by operator")
	if err != nil {
		return AuthorityInfo{}, ch.abort(err)
	}
	if err := ch.commit(ctx); err != nil {
		return AuthorityInfo{}, err
	}
	return *info(a), nil
}

// Activate makes the prepared authority with the given ID the active one;
// the previously active authority becomes old. Activating before the
// prepared authority was published for MinPublishedHints refresh hints is
// allowed (operators rotating away from a compromised key need it) and
// logged; Warning tells callers whether it happened.
func (c *CA) Activate(ctx context.Context, kind datastore.AuthorityKind, id string) (AuthorityInfo, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.current(ctx); err != nil {
		return AuthorityInfo{}, "", err
	}
	ch := c.begin()
	prepared := ch.inState(kind, datastore.StatePrepared)
	if prepared == nil {
		return AuthorityInfo{}, "", fmt.Errorf("no %s authority is prepared; prepare one first: %w", KindName(kind), ErrFailedPrecondition)
	}
	if prepared.ID != id {
		return AuthorityInfo{}, "", fmt.Errorf("%q is not the prepared %s authority (that is %s): %w", id, KindName(kind), prepared.ID, ErrUnknownAuthority)
	}
	warning := c.earlyActivationWarning(ch, prepared)
	ch.activate(prepared, "requested by operator")
	if err := ch.commit(ctx); err != nil {
		return AuthorityInfo{}, "", err
	}
	return *info(prepared), warning, nil
}

func (c *CA) earlyActivationWarning(ch *change, prepared *authority) string {
	published := ch.now.Sub(prepared.PreparedAt)
	safe := MinPublishedHints * c.cfg.RefreshHint
	if published >= safe {
		return ""
	}
	msg := fmt.Sprintf("the authority was published only %s ago; partners polling every %s may not have it yet and will reject SVIDs it signs until they refresh (safe after %s)",
		published.Round(time.Second), c.cfg.RefreshHint, safe)
	c.log.Warn("early activation", attrKind, prepared.Kind, attrAuthorityID, prepared.ID, attrReason, msg)
	return msg
}

// Taint marks an old authority as tainted: it should no longer be trusted
// and everything it signed should be replaced.
func (c *CA) Taint(ctx context.Context, kind datastore.AuthorityKind, id string) (AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.current(ctx); err != nil {
		return AuthorityInfo{}, err
	}
	if kind == datastore.KindX509 && c.cfg.Upstream != nil {
		return AuthorityInfo{}, fmt.Errorf("local X.509 authorities cannot be tainted when an upstream CA signs them; rotate the upstream CA instead: %w", ErrFailedPrecondition)
	}
	ch := c.begin()
	a, err := ch.oldAuthority(kind, id, "tainted")
	if err != nil {
		return AuthorityInfo{}, err
	}
	if a.Tainted {
		return AuthorityInfo{}, fmt.Errorf("%s authority %s is already tainted: %w", KindName(kind), id, ErrFailedPrecondition)
	}
	a.Tainted = true
	ch.touch(a, "tainted", "requested by operator")
	if err := ch.commit(ctx); err != nil {
		return AuthorityInfo{}, err
	}
	return *info(a), nil
}

// Revoke removes a tainted old authority from the bundle and deletes its key.
func (c *CA) Revoke(ctx context.Context, kind datastore.AuthorityKind, id string) (AuthorityInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.current(ctx); err != nil {
		return AuthorityInfo{}, err
	}
	ch := c.begin()
	a, err := ch.oldAuthority(kind, id, "revoked")
	if err != nil {
		return AuthorityInfo{}, err
	}
	if !a.Tainted {
		return AuthorityInfo{}, fmt.Errorf("%s authority %s must be tainted before it is revoked: %w", KindName(kind), id, ErrFailedPrecondition)
	}
	ch.remove(a, "revoked", "requested by operator")
	if err := ch.commit(ctx); err != nil {
		return AuthorityInfo{}, err
	}
	return *info(a), nil
}

func (ch *change) oldAuthority(kind datastore.AuthorityKind, id, done string) (*authority, error) {
	a := ch.find(kind, id)
	switch {
	case id == "":
		return nil, fmt.Errorf("an authority ID is required: %w", ErrUnknownAuthority)
	case a == nil:
		return nil, fmt.Errorf("no %s authority has ID %q: %w", KindName(kind), id, ErrUnknownAuthority)
	case a.State != datastore.StateOld:
		return nil, fmt.Errorf("only an old %s authority can be %s, and %s is %s; activate a new authority first: %w",
			KindName(kind), done, id, a.State, ErrFailedPrecondition)
	}
	return a, nil
}

// KindName names an authority kind for people: "X.509" or "JWT".
func KindName(kind datastore.AuthorityKind) string {
	if kind == datastore.KindX509 {
		return "X.509"
	}
	return "JWT"
}
