package federation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/profile"
)

// ErrRollback means a partner served a bundle with a lower spiffe_sequence
// than the one we hold.
var ErrRollback = errors.New("sequence rollback")

// stored is the bundle we hold for a trust domain.
type stored struct {
	bundle  *spiffebundle.Bundle
	doc     []byte
	updated time.Time
}

// poll fetches rel's bundle once, from the first endpoint that answers,
// stores it if it really changed, and records the outcome. When another
// replica holds the partner's lease, it follows that replica instead.
func (r *Refresher) poll(ctx context.Context, e *entry) error {
	e.poll.Lock()
	defer e.poll.Unlock()
	r.mu.Lock()
	rel, interval := e.rel, r.interval(e.status.RefreshHint)
	r.mu.Unlock()
	attempt := r.cfg.Now()
	lease, err := r.claim(ctx, e, rel.TrustDomain, attempt, interval)
	if err != nil || lease.Holder != r.cfg.Replica {
		return r.follow(ctx, e, rel.TrustDomain, attempt, lease, err)
	}
	held, err := r.load(ctx, rel.TrustDomain)
	var res *bundle.Result
	var endpoint *url.URL
	if err == nil {
		res, endpoint, err = r.fetch(ctx, rel, r.trust(ctx, rel, held))
	}
	if err == nil {
		held, err = r.save(ctx, e, rel, res.Bundle, held)
	}
	r.record(e, attempt, res, endpoint, held, err)
	r.extend(ctx, e, lease, attempt, interval)
	return err
}

// load returns the bundle stored for td, or nil when there is none yet
// (a normal state for a new relationship, not an error).
func (r *Refresher) load(ctx context.Context, td spiffeid.TrustDomain) (*stored, error) {
	rec, err := r.cfg.Store.FederatedBundle(ctx, td)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil //nolint:nilnil // no bundle yet is a state, see above
	}
	if err != nil {
		return nil, err
	}
	res, err := bundle.Parse(td, rec.Document, bundle.Options{})
	if err != nil {
		return nil, fmt.Errorf("stored bundle of %q: %w", td.Name(), err)
	}
	res.Bundle.SetSequenceNumber(rec.Sequence)
	return &stored{bundle: res.Bundle, doc: rec.Document, updated: rec.UpdatedAt}, nil
}

// trust returns the bundle that authenticates an https_spiffe endpoint:
// the one we hold for the endpoint SPIFFE ID's trust domain (SPIFFE
// Federation, https_spiffe profile). nil makes the fetcher explain how to
// bootstrap.
func (r *Refresher) trust(ctx context.Context, rel Relationship, held *stored) *spiffebundle.Bundle {
	if rel.Profile != profile.HTTPSSPIFFE {
		return nil
	}
	td := rel.EndpointSPIFFEID.TrustDomain()
	switch {
	case td == rel.TrustDomain && held != nil:
		return held.bundle
	case td == rel.TrustDomain:
		return nil
	case td == r.cfg.LocalTrustDomain && r.cfg.LocalBundle != nil:
		return r.cfg.LocalBundle()
	}
	other, err := r.load(ctx, td)
	if err != nil || other == nil {
		return nil
	}
	return other.bundle
}

// fetch tries the endpoints in order and returns the first success, or
// the primary endpoint's error.
func (r *Refresher) fetch(ctx context.Context, rel Relationship, trust *spiffebundle.Bundle) (*bundle.Result, *url.URL, error) {
	var firstErr error
	for _, u := range rel.BundleEndpointURLs {
		res, err := r.cfg.Fetcher.Fetch(ctx, rel, u, trust)
		if err == nil {
			return res, u, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, rel.BundleEndpointURLs[0], firstErr
}

// save stores fetched unless it is a rollback or unchanged, and returns
// what we now hold.
func (r *Refresher) save(ctx context.Context, e *entry, rel Relationship, fetched *spiffebundle.Bundle, held *stored) (*stored, error) {
	seq, hasSeq := fetched.SequenceNumber()
	if held != nil && hasSeq {
		if heldSeq, _ := held.bundle.SequenceNumber(); seq < heldSeq {
			return held, fmt.Errorf("%w: %q served spiffe_sequence %d, lower than the %d we hold; keeping our bundle. If the partner really rebuilt its trust domain, delete our copy (treaty bundle delete -id spiffe://%s) and bootstrap again",
				ErrRollback, rel.TrustDomain.Name(), seq, heldSeq, rel.TrustDomain.Name())
		}
	}
	fetched.SetSequenceNumber(seq)
	doc, err := bundle.Marshal(fetched)
	if err != nil {
		return held, fmt.Errorf("encode bundle of %q: %w", rel.TrustDomain.Name(), err)
	}
	if held != nil && bytes.Equal(doc, held.doc) {
		return held, nil
	}
	now := r.cfg.Now()
	if err := r.cfg.Store.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: rel.TrustDomain, Document: doc, Sequence: seq, UpdatedAt: now}); err != nil {
		return held, fmt.Errorf("store bundle of %q: %w", rel.TrustDomain.Name(), err)
	}
	if fetched.Empty() {
		r.log.Warn("partner published an empty bundle: it revoked every authority, and nothing of it verifies any more", attrTrustDomain, rel.TrustDomain.Name())
	}
	r.log.Info("partner bundle updated", attrTrustDomain, rel.TrustDomain.Name(), attrSequence, seq)
	r.mu.Lock()
	e.published = publishedOf(doc, seq)
	r.announce()
	r.mu.Unlock()
	return &stored{bundle: fetched, doc: doc, updated: now}, nil
}

// record updates e's status and schedule after a poll.
func (r *Refresher) record(e *entry, attempt time.Time, res *bundle.Result, endpoint *url.URL, held *stored, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &e.status
	prevReason, prevFailures := st.LastReason, st.ConsecutiveFailures
	st.LastAttempt, st.Endpoint = attempt, RedactURL(endpoint)
	r.unsaved[e.rel.TrustDomain] = true
	if r.cfg.Leases != nil {
		st.PolledBy = r.cfg.Replica
	}
	r.describeHeld(st, held)
	if err == nil {
		st.LastSuccess, st.ConsecutiveFailures, st.LastError, st.LastReason = attempt, 0, "", ""
		st.Warnings = res.Warnings
		r.logIgnored(st, res.Ignored)
		if hint, ok := res.Bundle.RefreshHint(); ok {
			st.RefreshHint = hint
		}
		if prevFailures > 0 {
			r.log.Info("partner endpoint recovered", attrTrustDomain, st.TrustDomain, attrFailures, prevFailures)
		}
		e.next = attempt.Add(jitter(r.interval(st.RefreshHint)))
	} else {
		st.ConsecutiveFailures++
		st.LastError, st.LastReason = err.Error(), reasonOf(err)
		switch {
		case st.ConsecutiveFailures > 1 && st.LastReason == prevReason:
		case st.LastReason == string(ReasonEffectivelyEmpty):
			// Loud: taken literally, the document would revoke the partner.
			r.log.Error("partner published a bundle whose every entry is ignored; keeping the last good bundle", attrTrustDomain, st.TrustDomain, attrError, err)
		default:
			r.log.Warn("partner bundle fetch failed; keeping the last good bundle", attrTrustDomain, st.TrustDomain, attrError, err)
		}
		e.next = attempt.Add(backoff(st.ConsecutiveFailures, r.interval(st.RefreshHint)))
	}
	st.NextAttempt = e.next
	st.State = st.state(attempt, r.interval(st.RefreshHint))
}

// logIgnored records the entries a fetch ignored, and logs them when they
// differ from the previous fetch's: once per change, not once per poll.
func (r *Refresher) logIgnored(st *Status, ignored []bundle.Ignored) {
	prev := st.Ignored
	st.Ignored = ignored
	if len(ignored) == 0 || slices.Equal(prev, ignored) {
		return
	}
	messages := make([]string, len(ignored))
	for i, ig := range ignored {
		messages[i] = ig.Message
	}
	r.log.Warn("partner bundle has entries that are ignored; the rest of it is used", attrTrustDomain, st.TrustDomain, attrIgnored, messages)
}

func (r *Refresher) describeHeld(st *Status, held *stored) {
	st.HasBundle = held != nil
	if held == nil {
		return
	}
	st.Sequence, _ = held.bundle.SequenceNumber()
	st.BundleUpdated = held.updated
	st.EarliestExpiry = earliestExpiry(held.bundle)
	if st.RefreshHint == 0 {
		st.RefreshHint, _ = held.bundle.RefreshHint()
	}
}

// reasonOf extracts a failure classification for status and metrics.
func reasonOf(err error) string {
	if errors.Is(err, ErrRollback) {
		return "rollback"
	}
	type reasoner interface{ FailureReason() string }
	var re reasoner
	if errors.As(err, &re) {
		return re.FailureReason()
	}
	return "other"
}

// Log attribute keys.
const (
	attrTrustDomain = "partner"
	attrError       = "error"
	attrSequence    = "sequence"
	attrFailures    = "consecutive_failures"
	attrIgnored     = "ignored_entries"
)
