package federation

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Leases coordinate replicas that share one database, so that each partner
// is polled by one of them; the datastore implements it. Implementations
// are safe for concurrent use and compare the callers' clocks.
type Leases interface {
	// AcquireLease takes or renews the lease called name for holder until
	// now+ttl, and reports whether holder holds it.
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseLease gives up holder's lease; it does nothing if holder does
	// not hold it.
	ReleaseLease(ctx context.Context, name, holder string) error
	// Lease says who holds the lease called name and until when, or
	// returns an error wrapping datastore.ErrNotFound if nobody does.
	Lease(ctx context.Context, name string) (datastore.Lease, error)
}

// releaseTimeout bounds giving up the leases when Run stops.
const releaseTimeout = 5 * time.Second

// leaseName names the lease of polling td.
func leaseName(td spiffeid.TrustDomain) string { return "poll:" + td.Name() }

// leaseTTL is how long a poll holds the lease: past the latest next poll
// (the interval plus a tenth of jitter, or a shorter backoff), with a
// margin for a late timer or a busy worker pool, so that a live poller
// always renews in time and no other replica polls in between. When the
// poller dies, another takes over when the lease runs out: at most half
// an interval after the poll that was due.
func leaseTTL(interval time.Duration) time.Duration { return interval + interval/2 }

// followAfter is when a replica that does not poll a partner checks
// again: just after the poller's lease runs out, which is shortly after
// the poller's next poll (so the bundle it stored is picked up then), or
// at once if the poller died. maxWait bounds the wait when the lease was
// taken for a longer interval than the partner now asks for.
func followAfter(lease datastore.Lease, now time.Time, interval, maxWait time.Duration) time.Time {
	next := lease.ExpiresAt.Add(interval / 50)
	if late := now.Add(maxWait); next.After(late) {
		return late
	}
	if soon := now.Add(interval / 50); next.Before(soon) {
		return soon
	}
	return next
}

// randomReplica names a replica that was given no name.
func randomReplica() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "replica-" + hex.EncodeToString(b)
}

// claim takes or renews the lease of polling e's partner. It returns a
// lease held by this replica when this replica polls (always, without
// Leases), else the lease of the replica that does.
func (r *Refresher) claim(ctx context.Context, e *entry, td spiffeid.TrustDomain, now time.Time, interval time.Duration) (datastore.Lease, error) {
	mine := datastore.Lease{Name: leaseName(td), Holder: r.cfg.Replica, ExpiresAt: now.Add(leaseTTL(interval))}
	if r.cfg.Leases == nil {
		return mine, nil
	}
	ok, err := r.cfg.Leases.AcquireLease(ctx, mine.Name, mine.Holder, now, leaseTTL(interval))
	if err != nil {
		return datastore.Lease{}, fmt.Errorf("take the lease of polling %q: %w", td.Name(), err)
	}
	r.mu.Lock()
	e.leased = ok
	r.mu.Unlock()
	if ok {
		return mine, nil
	}
	other, err := r.cfg.Leases.Lease(ctx, mine.Name)
	if errors.Is(err, datastore.ErrNotFound) {
		return datastore.Lease{Name: mine.Name, ExpiresAt: now}, nil // released just now: try again soon
	}
	if err != nil {
		return datastore.Lease{}, fmt.Errorf("read the lease of polling %q: %w", td.Name(), err)
	}
	return other, nil
}

// polledElsewhere is the answer to a manual refresh of a partner that
// another replica polls.
func polledElsewhere(td spiffeid.TrustDomain, polledBy string) error {
	who := fmt.Sprintf("replica %q", polledBy)
	if polledBy == "" {
		who = "another replica" // its lease was released as we looked
	}
	return fmt.Errorf("partner %q is polled by %s: run the refresh on that replica; this one re-read the bundle it stored", td.Name(), who)
}

// extend renews the lease after a poll whose refresh hint changed the
// interval it was taken for (the first poll after a start, or a partner
// changing its hint), so that the lease still ends just after the next
// poll: not before it, or another replica would poll early; not long
// after it, or a takeover would wait.
func (r *Refresher) extend(ctx context.Context, e *entry, lease datastore.Lease, attempt time.Time, interval time.Duration) {
	if r.cfg.Leases == nil {
		return
	}
	r.mu.Lock()
	current, td := r.interval(e.status.RefreshHint), e.status.TrustDomain
	r.mu.Unlock()
	if current == interval {
		return
	}
	if _, err := r.cfg.Leases.AcquireLease(ctx, lease.Name, r.cfg.Replica, attempt, leaseTTL(current)); err != nil {
		r.log.Warn("renewing the lease of polling a partner failed; another replica may poll it when the lease runs out", attrTrustDomain, td, attrError, err)
	}
}

// follow is a poll of a partner that another replica polls: it reads the
// bundle the poller stored and adopts it.
func (r *Refresher) follow(ctx context.Context, e *entry, td spiffeid.TrustDomain, attempt time.Time, lease datastore.Lease, err error) error {
	var held *stored
	if err == nil {
		held, err = r.load(ctx, td)
	}
	if err == nil {
		err = r.adopt(e, held)
	}
	r.recordFollow(e, attempt, lease, held, err)
	return err
}

// published is what this replica last announced of a partner's stored
// bundle; the zero value is no bundle.
type published struct {
	sum [sha256.Size]byte
	seq uint64
	ok  bool
}

func publishedOf(doc []byte, seq uint64) published {
	return published{sum: sha256.Sum256(doc), seq: seq, ok: true}
}

// adopt announces held, which another replica stored, to the Changed
// subscribers if it differs from what this replica announced last. Like a
// fetch, it refuses a lower spiffe_sequence than the one announced: the
// bundle never goes backwards for this replica's workloads.
func (r *Refresher) adopt(e *entry, held *stored) error {
	var next published
	if held != nil {
		seq, _ := held.bundle.SequenceNumber()
		next = publishedOf(held.doc, seq)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := e.published
	switch {
	case next == prev:
		return nil
	case next.ok && prev.ok && next.seq < prev.seq:
		return fmt.Errorf("%w: the stored bundle of %q has spiffe_sequence %d, lower than the %d this replica announced; not adopted",
			ErrRollback, e.rel.TrustDomain.Name(), next.seq, prev.seq)
	}
	e.published = next
	r.announce()
	return nil
}

// announce wakes the Changed subscribers; the caller holds r.mu.
func (r *Refresher) announce() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// recordFollow updates e's status and schedule after reading the bundle
// that another replica polled.
func (r *Refresher) recordFollow(e *entry, attempt time.Time, lease datastore.Lease, held *stored, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &e.status
	st.LastAttempt = attempt
	if lease.Holder != "" {
		st.PolledBy = lease.Holder
	}
	if err != nil {
		st.ConsecutiveFailures++
		st.LastError, st.LastReason = err.Error(), reasonOf(err)
		if st.ConsecutiveFailures == 1 {
			r.log.Warn("following the replica that polls the partner failed", attrTrustDomain, st.TrustDomain, attrError, err)
		}
		e.next = attempt.Add(backoff(st.ConsecutiveFailures, r.interval(st.RefreshHint)))
	} else {
		r.describeHeld(st, held)
		if held != nil {
			st.RefreshHint, _ = held.bundle.RefreshHint()
		}
		// The poller knows the partner's warnings and failures; this
		// replica knows that it read the poller's bundle.
		st.LastSuccess, st.ConsecutiveFailures, st.LastError, st.LastReason = attempt, 0, "", ""
		st.Warnings, st.Ignored = nil, nil
		// Past the longest jitter of the poller's next poll (see
		// leaseTTL); before its first bundle, as often as a poll may be.
		interval := r.interval(st.RefreshHint)
		maxWait := interval + interval/5
		if held == nil {
			maxWait = r.cfg.MinRefresh
		}
		e.next = followAfter(lease, attempt, interval, maxWait)
	}
	st.NextAttempt = e.next
	st.State = st.state(attempt, r.interval(st.RefreshHint))
}

// BundleChanged re-reads the stored bundle of td, which another replica
// changed, and wakes the Changed subscribers if it is new to this replica
// (see adopt). The server calls it when the database reports the change,
// so that workloads need not wait for this replica's next check. For a
// trust domain without a relationship (a bundle set by hand) it wakes
// them unconditionally.
func (r *Refresher) BundleChanged(ctx context.Context, td spiffeid.TrustDomain) error {
	r.mu.Lock()
	e, ok := r.entries[td]
	if !ok {
		r.announce()
	}
	r.mu.Unlock()
	if !ok {
		return nil
	}
	e.poll.Lock()
	defer e.poll.Unlock()
	held, err := r.load(ctx, td)
	if err == nil {
		err = r.adopt(e, held)
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.describeHeld(&e.status, held)
	r.mu.Unlock()
	return nil
}

// releaseLeases hands the leases this replica holds over: each now ends
// when this replica's next poll was due, so that another replica polls
// the partner then, not when the lease would have run out, and not
// earlier either (one poll per interval, across a restart too).
func (r *Refresher) releaseLeases(ctx context.Context) {
	if r.cfg.Leases == nil || r.keepLeases {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	now := r.cfg.Now()
	for td, due := range r.leased() {
		if due.After(now) {
			_, err := r.cfg.Leases.AcquireLease(ctx, leaseName(td), r.cfg.Replica, now, due.Sub(now))
			r.logRelease(td, err)
			continue
		}
		r.release(ctx, td)
	}
}

// leased returns the partners whose lease this replica holds, with when
// their next poll is due.
func (r *Refresher) leased() map[spiffeid.TrustDomain]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[spiffeid.TrustDomain]time.Time{}
	for td, e := range r.entries {
		if e.leased {
			out[td] = e.next
		}
	}
	return out
}

// release gives up the lease of polling td at once.
func (r *Refresher) release(ctx context.Context, td spiffeid.TrustDomain) {
	r.logRelease(td, r.cfg.Leases.ReleaseLease(ctx, leaseName(td), r.cfg.Replica))
}

// logRelease logs a failure to hand a lease over: it only delays the
// takeover until the lease runs out.
func (r *Refresher) logRelease(td spiffeid.TrustDomain, err error) {
	if err != nil {
		r.log.Warn("handing over the lease of polling a partner failed; another replica takes over when it runs out", attrTrustDomain, td.Name(), attrError, err)
	}
}
