package federation

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
)

// Defaults for zero RefresherConfig fields.
const (
	DefaultMinRefresh = 30 * time.Second
	DefaultMaxRefresh = time.Hour
	DefaultInterval   = 5 * time.Minute // when a partner gives no hint
	DefaultWorkers    = 8
	firstBackoff      = 5 * time.Second
)

// BundleFetcher retrieves one partner bundle; *Fetcher implements it.
type BundleFetcher interface {
	Fetch(ctx context.Context, rel Relationship, endpoint *url.URL, trust *spiffebundle.Bundle) (*bundle.Result, error)
}

// RefresherStore is the persistence the refresher needs.
type RefresherStore interface {
	ListRelationships(ctx context.Context) ([]datastore.Relationship, error)
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error)
	SetFederatedBundle(ctx context.Context, b datastore.Bundle) error
}

// RefresherConfig configures a Refresher; zero fields take the defaults.
type RefresherConfig struct {
	Store   RefresherStore
	Fetcher BundleFetcher
	// LocalTrustDomain and LocalBundle authenticate endpoints whose SPIFFE
	// ID is in our own trust domain (rare, but allowed).
	LocalTrustDomain spiffeid.TrustDomain
	LocalBundle      func() *spiffebundle.Bundle
	// MinRefresh and MaxRefresh clamp the partners' refresh hints.
	MinRefresh time.Duration
	MaxRefresh time.Duration
	// Workers bounds how many partners are polled at once.
	Workers int
	// Leases, when set, share the polling among replicas of one database:
	// each partner is polled by the replica holding its lease, and the
	// others read the bundle it stored (see Refresher). nil polls every
	// partner here, as a single server does.
	Leases Leases
	// Replica names this replica in the leases; a zero Replica gets a
	// random name.
	Replica string
	// Polls, when set, keeps what the polls found across restarts: loaded
	// by the first Reload, written every savePollsEvery.
	Polls  PollRecords
	Now    func() time.Time
	Logger *slog.Logger
}

// Refresher polls every partner's bundle endpoint on one scheduler (a timer
// heap feeding a bounded worker pool, not a goroutine per partner), stores
// bundles that really changed, refuses rollbacks, and keeps the last good
// bundle whatever a partner serves.
//
// With Leases, replicas sharing a database take turns: when a partner's
// poll is due, the replica that takes or renews the partner's lease polls
// it, and the others read the bundle it stored and announce it to their
// own subscribers. A lease outlives the poller's next poll (see leaseTTL),
// so a live poller keeps it and no two replicas poll a partner in the same
// interval; when Run stops, the replica releases its leases.
type Refresher struct {
	cfg RefresherConfig
	log *slog.Logger
	// keepLeases skips releasing the leases when Run stops, as a crash
	// would (tests).
	keepLeases bool

	mu      sync.Mutex
	entries map[spiffeid.TrustDomain]*entry
	queue   entryHeap
	wake    chan struct{}
	changed chan struct{}
	// unsaved are the partners polled since their records were last
	// saved (with Polls); restored is set once the records were loaded.
	unsaved  map[spiffeid.TrustDomain]bool
	restored bool
}

// entry is the scheduling and status state of one relationship.
type entry struct {
	rel    Relationship
	next   time.Time
	index  int // in the heap; -1 when not queued
	busy   bool
	status Status
	poll   sync.Mutex // serialises polls of this relationship
	// leased tells whether this replica holds the lease of polling it.
	leased bool
	// published is the stored bundle last announced to Changed
	// subscribers (only tracked with Leases).
	published published
}

// NewRefresher returns a refresher; Reload loads the relationships.
func NewRefresher(cfg RefresherConfig) *Refresher {
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = DefaultMinRefresh
	}
	if cfg.MaxRefresh == 0 {
		cfg.MaxRefresh = DefaultMaxRefresh
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Leases != nil && cfg.Replica == "" {
		cfg.Replica = randomReplica()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Refresher{cfg: cfg, log: log, entries: map[spiffeid.TrustDomain]*entry{},
		wake: make(chan struct{}, 1), changed: make(chan struct{}), unsaved: map[spiffeid.TrustDomain]bool{}}
}

// Changed returns a channel closed the next time a federated bundle is
// stored.
func (r *Refresher) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Reload re-reads the relationships from the store: new and changed ones
// are polled at once, removed ones are forgotten (and their leases
// released).
func (r *Refresher) Reload(ctx context.Context) error {
	recs, err := r.cfg.Store.ListRelationships(ctx)
	if err != nil {
		return err
	}
	removed := r.apply(recs)
	if r.cfg.Polls != nil && !r.restored {
		polls, err := r.cfg.Polls.ListPollRecords(ctx)
		if err != nil {
			return err
		}
		r.mu.Lock()
		r.restorePolls(polls)
		r.restored = true
		r.mu.Unlock()
	}
	for _, td := range removed {
		r.release(ctx, td)
	}
	return nil
}

// apply makes the entries match recs, and returns the removed partners
// whose lease this replica holds.
func (r *Refresher) apply(recs []datastore.Relationship) (leased []spiffeid.TrustDomain) {
	seen := map[spiffeid.TrustDomain]bool{}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	for _, rec := range recs {
		rel, err := FromRecord(rec)
		if err != nil {
			r.log.Error("skipping a stored relationship that does not parse", attrTrustDomain, rec.TrustDomain.Name(), attrError, err)
			continue
		}
		seen[rel.TrustDomain] = true
		r.upsert(rel, now)
	}
	for td, e := range r.entries {
		if seen[td] {
			continue
		}
		if e.index >= 0 {
			heap.Remove(&r.queue, e.index)
		}
		if e.leased {
			leased = append(leased, td)
		}
		delete(r.entries, td)
	}
	r.poke()
	return leased
}

// upsert adds or updates an entry; the caller holds r.mu.
func (r *Refresher) upsert(rel Relationship, now time.Time) {
	e, ok := r.entries[rel.TrustDomain]
	if ok && e.rel.Equal(&rel) {
		return
	}
	if !ok {
		e = &entry{index: -1, status: Status{TrustDomain: rel.TrustDomain.Name(), State: StateNeverFetched}}
		r.entries[rel.TrustDomain] = e
	}
	e.rel = rel
	r.schedule(e, now)
}

// schedule (re)queues e at t; the caller holds r.mu.
func (r *Refresher) schedule(e *entry, t time.Time) {
	e.next = t
	e.status.NextAttempt = t
	if e.busy {
		return // the worker requeues it when it is done
	}
	if e.index >= 0 {
		heap.Fix(&r.queue, e.index)
		return
	}
	heap.Push(&r.queue, e)
}

func (r *Refresher) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run polls due relationships until ctx is done.
func (r *Refresher) Run(ctx context.Context) error {
	jobs := make(chan *entry)
	var wg sync.WaitGroup
	for range r.cfg.Workers {
		wg.Go(func() {
			for e := range jobs {
				r.pollEntry(ctx, e)
			}
		})
	}
	defer func() {
		close(jobs)
		wg.Wait()
		r.releaseLeases(context.WithoutCancel(ctx))
		r.savePolls(context.WithoutCancel(ctx))
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	save := time.NewTicker(savePollsEvery)
	defer save.Stop()
	for {
		due, wait := r.nextDue()
		if due != nil {
			select {
			case jobs <- due:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-timer.C:
		case <-save.C:
			r.savePolls(ctx)
		}
	}
}

// nextDue pops a due entry and marks it busy, or says how long to wait.
func (r *Refresher) nextDue() (*entry, time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.queue.Len() == 0 {
		return nil, time.Hour
	}
	e := r.queue[0]
	if wait := e.next.Sub(r.cfg.Now()); wait > 0 {
		return nil, wait
	}
	heap.Pop(&r.queue)
	e.busy = true
	return e, 0
}

// Refresh polls the relationship with td now and returns the result of
// that poll (federation refresh, SPIRE's RefreshBundle). When another
// replica polls td, this one re-reads the bundle that replica stored and
// returns an error naming it.
func (r *Refresher) Refresh(ctx context.Context, td spiffeid.TrustDomain) error {
	r.mu.Lock()
	e, ok := r.entries[td]
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("no federation relationship with %q: %w", td.Name(), datastore.ErrNotFound)
	}
	err := r.poll(ctx, e)
	r.mu.Lock()
	if r.entries[td] == e {
		r.schedule(e, e.next) // record moved the next poll; keep the heap in order
	}
	leased := e.leased
	polledBy := e.status.PolledBy
	r.mu.Unlock()
	r.poke()
	if err == nil && r.cfg.Leases != nil && !leased {
		return polledElsewhere(td, polledBy)
	}
	return err
}

// pollEntry is a worker's poll; it requeues the entry afterwards.
func (r *Refresher) pollEntry(ctx context.Context, e *entry) {
	_ = r.poll(ctx, e) // the outcome is in the status and the log
	r.mu.Lock()
	defer r.mu.Unlock()
	e.busy = false
	if r.entries[e.rel.TrustDomain] == e {
		r.schedule(e, e.next)
	}
	r.poke() // Run may be sleeping on an empty queue
}

// Status returns the status of every relationship, ordered by trust domain.
func (r *Refresher) Status() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	out := make([]Status, 0, len(r.entries))
	for _, e := range r.entries {
		st := e.status
		st.State = st.state(now, r.interval(st.RefreshHint))
		st.Warnings = append([]string(nil), st.Warnings...)
		out = append(out, st)
	}
	sortStatus(out)
	return out
}

// interval is the poll period for a partner hint.
func (r *Refresher) interval(hint time.Duration) time.Duration {
	if hint <= 0 {
		hint = DefaultInterval
	}
	return min(max(hint, r.cfg.MinRefresh), r.cfg.MaxRefresh)
}

// jitter spreads polls by up to a tenth of d either way.
func jitter(d time.Duration) time.Duration {
	spread := int64(d / 10)
	if spread <= 0 {
		return d
	}
	return d - time.Duration(spread) + time.Duration(rand.Int64N(2*spread)) //nolint:gosec // scheduling jitter, not security
}

// backoff is the wait after the n-th consecutive failure: exponential from
// a few seconds, capped at the poll interval, with jitter.
func backoff(n int, interval time.Duration) time.Duration {
	d := firstBackoff << min(n-1, 20)
	return jitter(min(d, interval))
}

// earliestExpiry returns when the first X.509 authority of b expires.
func earliestExpiry(b *spiffebundle.Bundle) time.Time {
	var first time.Time
	for _, c := range b.X509Authorities() {
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	return first
}
