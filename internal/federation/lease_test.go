package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/postgres"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/pgtest"
)

// replicaInterval is the poll interval of the replica tests: short, so
// that several intervals pass in seconds, yet long against the busy
// machine's scheduling delays (the lease's margin is half of it).
const replicaInterval = 600 * time.Millisecond

// replicaPartner is a partner trust domain's bundle endpoint: a TLS
// server on loopback that records when it is fetched.
type replicaPartner struct {
	td  spiffeid.TrustDomain
	srv *httptest.Server

	mu      sync.Mutex
	seq     uint64
	doc     []byte
	fetches []time.Time
}

// fetchLog records which replica fetched which partner when, so that a
// failure says who polled.
type fetchLog struct {
	mu     sync.Mutex
	events []string
	start  time.Time
}

func (l *fetchLog) add(replica string, td spiffeid.TrustDomain) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("%s %s fetches %s", time.Since(l.start).Round(time.Millisecond), replica, td.Name()))
}

func (l *fetchLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, "\n")
}

// loggedFetcher is a replica's real fetcher, writing to the fetch log.
type loggedFetcher struct {
	*Fetcher
	replica string
	log     *fetchLog
}

func (f loggedFetcher) Fetch(ctx context.Context, rel Relationship, endpoint *url.URL, trust *spiffebundle.Bundle) (*bundle.Result, error) {
	f.log.add(f.replica, rel.TrustDomain)
	return f.Fetcher.Fetch(ctx, rel, endpoint, trust)
}

func newReplicaPartner(t *testing.T, name string) *replicaPartner {
	t.Helper()
	p := &replicaPartner{td: spiffeid.RequireTrustDomainFromString(name)}
	p.rotate(t)
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // a crashed replica drops its connections
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *replicaPartner) serve(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	p.fetches = append(p.fetches, time.Now())
	doc := p.doc
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}

// rotate publishes a new bundle with the next sequence number.
func (p *replicaPartner) rotate(t *testing.T) uint64 {
	t.Helper()
	doc, err := bundle.Marshal(replicaBundle(t, p.td, p.seq+1))
	require.NoError(t, err)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	p.doc = doc
	return p.seq
}

// fetched returns the times of the fetches so far.
func (p *replicaPartner) fetched() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.fetches)
}

func replicaBundle(t *testing.T, td spiffeid.TrustDomain, seq uint64) *spiffebundle.Bundle {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(seq)), Subject: pkix.Name{CommonName: td.Name()}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	b := spiffebundle.New(td)
	b.AddX509Authority(cert)
	b.SetRefreshHint(replicaInterval)
	b.SetSequenceNumber(seq)
	return b
}

// replicaStore is what a replica needs of the datastore.
type replicaStore interface {
	RefresherStore
	Leases
	CreateRelationship(ctx context.Context, r datastore.Relationship, bootstrap *datastore.Bundle) (bool, error)
	DeleteFederatedBundle(ctx context.Context, td spiffeid.TrustDomain) error
}

// replica is one refresher, as one treaty server of several runs it.
type replica struct {
	name   string
	store  replicaStore
	r      *Refresher
	cancel context.CancelFunc
	done   chan error
}

// start runs the replica's refresher until stop or crash.
func (rp *replica) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rp.cancel, rp.done = cancel, make(chan error, 1)
	go func() { rp.done <- rp.r.Run(ctx) }()
	t.Cleanup(func() { rp.stop(t) })
}

// stop ends Run, which releases the leases.
func (rp *replica) stop(t *testing.T) {
	t.Helper()
	if rp.cancel == nil {
		return
	}
	rp.cancel()
	require.NoError(t, <-rp.done)
	rp.cancel = nil
}

// crash ends Run without releasing the leases, as kill -9 would.
func (rp *replica) crash(t *testing.T) {
	t.Helper()
	rp.r.keepLeases = true
	rp.stop(t)
}

func (rp *replica) status(t *testing.T, td spiffeid.TrustDomain) Status {
	t.Helper()
	for _, st := range rp.r.Status() {
		if st.TrustDomain == td.Name() {
			return st
		}
	}
	t.Fatalf("replica %s has no status of %s", rp.name, td.Name())
	return Status{}
}

// openReplicas opens n stores of one database and makes a replica on
// each, with relationships to the partners.
func openReplicas(t *testing.T, n int, open func(t *testing.T) replicaStore, partners []*replicaPartner) []*replica {
	t.Helper()
	fetches := &fetchLog{start: time.Now()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("fetches:\n%s", fetches)
		}
	})
	roots := x509.NewCertPool()
	for _, p := range partners {
		roots.AddCert(p.srv.Certificate())
	}
	out := make([]*replica, n)
	for i := range out {
		rp := &replica{name: fmt.Sprintf("replica-%d", i), store: open(t)}
		fetcher := NewFetcher(FetcherConfig{RootCAs: roots})
		t.Cleanup(fetcher.Close)
		rp.r = NewRefresher(RefresherConfig{
			Store: rp.store, Fetcher: loggedFetcher{Fetcher: fetcher, replica: rp.name, log: fetches},
			MinRefresh: replicaInterval, MaxRefresh: replicaInterval,
			Leases: rp.store, Replica: rp.name,
		})
		out[i] = rp
	}
	for _, p := range partners {
		rel := datastore.Relationship{TrustDomain: p.td, EndpointURLs: []string{p.srv.URL}, Profile: "https_web"}
		_, err := out[0].store.CreateRelationship(t.Context(), rel, nil)
		require.NoError(t, err)
	}
	for _, rp := range out {
		require.NoError(t, rp.r.Reload(t.Context()))
	}
	return out
}

func openSQLiteReplicas(t *testing.T) func(t *testing.T) replicaStore {
	path := filepath.Join(t.TempDir(), "treaty.db")
	return func(t *testing.T) replicaStore {
		t.Helper()
		s, err := sqlite.Open(t.Context(), path)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

// openPostgresReplicas starts a cluster of its own, stopped when t ends,
// so that the package needs no pgtest.Main for a shared one.
func openPostgresReplicas(t *testing.T) func(t *testing.T) replicaStore {
	c := pgtest.Start(t)
	dsn, err := c.CreateDatabase(t.Context())
	require.NoError(t, err)
	return func(t *testing.T) replicaStore {
		t.Helper()
		s, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Password: c.Password})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
}

var replicaEngines = []struct {
	name string
	open func(t *testing.T) func(t *testing.T) replicaStore
}{
	{"sqlite", openSQLiteReplicas},
	{"postgres", openPostgresReplicas},
}

// holder returns the replica holding the lease of polling td, or nil.
func holder(t *testing.T, replicas []*replica, td spiffeid.TrustDomain) *replica {
	t.Helper()
	l, err := replicas[0].store.Lease(t.Context(), leaseName(td))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	for _, rp := range replicas {
		if rp.name == l.Holder {
			return rp
		}
	}
	t.Fatalf("lease of %s held by unknown replica %q", td.Name(), l.Holder)
	return nil
}

// requireOnePollPerInterval checks that the partner was fetched once per
// interval between from and to, not once per replica: a poller's polls
// start at least nine tenths of an interval apart (the jitter), and each
// handover adds at most one. Counts, not gaps, are compared: on the busy
// test machine a request may reach the endpoint late, which brings it
// near the next one without adding a poll.
func requireOnePollPerInterval(t *testing.T, p *replicaPartner, from, to time.Time, handovers int) {
	t.Helper()
	n := 0
	for _, at := range p.fetched() {
		if at.After(from) && !at.After(to) {
			n++
		}
	}
	most := int(to.Sub(from)/(replicaInterval*9/10)) + 2 + handovers // the first, and a late request
	t.Logf("%s fetched %d times in %s (at most %d)", p.td.Name(), n, to.Sub(from).Round(time.Millisecond), most)
	require.Positive(t, n, "%s polled", p.td.Name())
	require.LessOrEqual(t, n, most, "%s polled once per interval, not by every replica", p.td.Name())
}

// waitFetches waits until every partner has been fetched n more times.
func waitFetches(t *testing.T, partners []*replicaPartner, n int) {
	t.Helper()
	base := make([]int, len(partners))
	for i, p := range partners {
		base[i] = len(p.fetched())
	}
	require.Eventually(t, func() bool {
		for i, p := range partners {
			if len(p.fetched()) < base[i]+n {
				return false
			}
		}
		return true
	}, time.Duration(n)*replicaInterval*10, 20*time.Millisecond, "partners polled every interval")
}

// requireAdopted waits until every replica announced and reports the
// partner's sequence seq.
func requireAdopted(t *testing.T, replicas []*replica, changed []<-chan struct{}, p *replicaPartner, seq uint64) {
	t.Helper()
	for i, rp := range replicas {
		select {
		case <-changed[i]:
		case <-time.After(10 * replicaInterval):
			t.Fatalf("replica %s did not announce the new bundle of %s", rp.name, p.td.Name())
		}
		require.Eventually(t, func() bool { return rp.status(t, p.td).Sequence == seq }, 10*replicaInterval, 10*time.Millisecond,
			"replica %s holds sequence %d of %s", rp.name, seq, p.td.Name())
	}
}

func changedOf(replicas []*replica) []<-chan struct{} {
	out := make([]<-chan struct{}, len(replicas))
	for i, rp := range replicas {
		out[i] = rp.r.Changed()
	}
	return out
}

// Three replicas on one database poll each of two partners once per
// interval between them; the others adopt what the poller stored; a
// crashed poller's partners are taken over when its leases run out, and
// a stopped one's at once.
func TestReplicasPollEachPartnerOnce(t *testing.T) {
	for _, engine := range replicaEngines {
		t.Run(engine.name, func(t *testing.T) {
			open := engine.open(t)
			partners := []*replicaPartner{newReplicaPartner(t, "alpha.test"), newReplicaPartner(t, "beta.test")}
			replicas := openReplicas(t, 3, open, partners)
			changed := changedOf(replicas)
			for _, rp := range replicas {
				rp.start(t)
			}
			for _, p := range partners {
				requireAdopted(t, replicas, changed, p, 1)
			}
			from := time.Now()
			waitFetches(t, partners, 5)
			for _, p := range partners {
				requireOnePollPerInterval(t, p, from, time.Now(), 0)
				poller := holder(t, replicas, p.td)
				require.NotNil(t, poller)
				for _, rp := range replicas {
					require.Equal(t, poller.name, rp.status(t, p.td).PolledBy, "replica %s names the poller of %s", rp.name, p.td.Name())
				}
			}

			// The partner rotates: the poller stores the new bundle and
			// the others pick it up within about an interval.
			changed = changedOf(replicas)
			seq := partners[1].rotate(t)
			requireAdopted(t, replicas, changed, partners[1], seq)

			// The poller of beta crashes, keeping its leases: another
			// replica takes beta over when the lease runs out.
			crashed := holder(t, replicas, partners[1].td)
			crashed.crash(t)
			crashedAt := time.Now()
			live := slices.DeleteFunc(slices.Clone(replicas), func(rp *replica) bool { return rp == crashed })
			var taker *replica
			require.Eventually(t, func() bool {
				taker = holder(t, replicas, partners[1].td)
				return taker != nil && taker != crashed
			}, 10*leaseTTL(replicaInterval), 20*time.Millisecond, "a live replica takes over the crashed poller's partner")
			waitFetches(t, partners, 3)
			first := firstAfter(partners[1].fetched(), crashedAt)
			t.Logf("%s: %s crashed; %s polled %s %s later (interval %s, lease %s)", engine.name, crashed.name, taker.name,
				partners[1].td.Name(), first.Sub(crashedAt).Round(time.Millisecond), replicaInterval, leaseTTL(replicaInterval))
			// The lease ran out at most leaseTTL after the crash; allow
			// the busy machine a few intervals more.
			require.Less(t, first.Sub(crashedAt), leaseTTL(replicaInterval)+3*replicaInterval, "takeover after the lease runs out")
			changed = changedOf(live)
			seq = partners[1].rotate(t)
			requireAdopted(t, live, changed, partners[1], seq)

			// The new poller stops cleanly: it releases its leases, and
			// the last replica polls everything.
			held := map[spiffeid.TrustDomain]bool{}
			for _, p := range partners {
				held[p.td] = holder(t, replicas, p.td) == taker
			}
			taker.stop(t)
			last := slices.DeleteFunc(live, func(rp *replica) bool { return rp == taker })[0]
			for _, p := range partners {
				if !held[p.td] {
					continue
				}
				l, err := last.store.Lease(t.Context(), leaseName(p.td))
				if err == nil && l.Holder == taker.name {
					require.LessOrEqual(t, l.ExpiresAt, time.Now().Add(replicaInterval+replicaInterval/10), "%s handed the lease of %s over for its next poll", taker.name, p.td.Name())
				}
			}
			require.Eventually(t, func() bool {
				return holder(t, replicas, partners[0].td) == last && holder(t, replicas, partners[1].td) == last
			}, 10*leaseTTL(replicaInterval), 20*time.Millisecond, "the last replica polls every partner")
			waitFetches(t, partners, 2)
			for _, p := range partners {
				requireOnePollPerInterval(t, p, from, time.Now(), 2) // the crash, the stop
			}
		})
	}
}

func firstAfter(times []time.Time, after time.Time) time.Time {
	for _, at := range times {
		if at.After(after) {
			return at
		}
	}
	return time.Time{}
}

func requireClosed(t *testing.T, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
	default:
		t.Fatal(msg)
	}
}

func requireOpen(t *testing.T, ch <-chan struct{}, msg string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal(msg)
	default:
	}
}

// A replica that does not poll a partner announces the bundle the poller
// stored when told of the change, refuses one that goes backwards, and
// sends a manual refresh to the poller.
func TestFollowerAdoptsStoredBundles(t *testing.T) {
	ctx := t.Context()
	p := newReplicaPartner(t, "beta.test")
	replicas := openReplicas(t, 2, openSQLiteReplicas(t), []*replicaPartner{p})
	poller, follower := replicas[0], replicas[1]
	require.NoError(t, poller.r.Refresh(ctx, p.td))
	require.Equal(t, poller.name, poller.status(t, p.td).PolledBy)

	changed := follower.r.Changed()
	require.NoError(t, follower.r.BundleChanged(ctx, p.td))
	requireClosed(t, changed, "the follower announces the poller's bundle")
	require.Equal(t, uint64(1), follower.status(t, p.td).Sequence)
	changed = follower.r.Changed()
	require.NoError(t, follower.r.BundleChanged(ctx, p.td))
	requireOpen(t, changed, "the same bundle is announced once")

	err := follower.r.Refresh(ctx, p.td)
	require.ErrorContains(t, err, `polled by replica "replica-0"`)
	require.Equal(t, poller.name, follower.status(t, p.td).PolledBy)
	require.Len(t, p.fetched(), 1, "only the poller fetches")

	p.rotate(t)
	p.rotate(t)
	require.NoError(t, poller.r.Refresh(ctx, p.td))
	require.NoError(t, follower.r.BundleChanged(ctx, p.td))
	require.Equal(t, uint64(3), follower.status(t, p.td).Sequence)

	t.Run("fail/lower sequence", func(t *testing.T) {
		doc, err := bundle.Marshal(replicaBundle(t, p.td, 2))
		require.NoError(t, err)
		require.NoError(t, poller.store.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: p.td, Document: doc, Sequence: 2, UpdatedAt: time.Now()}))
		changed := follower.r.Changed()
		require.ErrorIs(t, follower.r.BundleChanged(ctx, p.td), ErrRollback)
		requireOpen(t, changed, "a lower sequence is not announced")
		require.Equal(t, uint64(3), follower.status(t, p.td).Sequence)
	})
	t.Run("ok/deleted", func(t *testing.T) {
		require.NoError(t, poller.store.DeleteFederatedBundle(ctx, p.td))
		changed := follower.r.Changed()
		require.NoError(t, follower.r.BundleChanged(ctx, p.td))
		requireClosed(t, changed, "a deleted bundle is announced")
		require.False(t, follower.status(t, p.td).HasBundle)
	})
	t.Run("ok/no relationship", func(t *testing.T) {
		changed := follower.r.Changed()
		require.NoError(t, follower.r.BundleChanged(ctx, spiffeid.RequireTrustDomainFromString("devices.test")))
		requireClosed(t, changed, "a bundle set by hand is announced")
	})
}

// Without Leases the refresher polls every partner itself and takes no
// lease: a single server behaves as it always did.
func TestRefresherWithoutLeasesTakesNone(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	env.fetcher.push(partnerBundle(t, 1), nil)
	require.NoError(t, env.r.Refresh(t.Context(), partner))
	_, err := env.store.Lease(t.Context(), leaseName(partner))
	require.ErrorIs(t, err, datastore.ErrNotFound)
	require.Empty(t, env.status(t).PolledBy)
}

// The poller's lease ends half an interval after its next poll is due,
// once the partner's refresh hint is known (the first poll of a partner
// takes it for the default interval).
func TestLeaseEndsHalfAnIntervalAfterTheNextPoll(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	env.r = NewRefresher(RefresherConfig{Store: env.store, Fetcher: env.fetcher, Leases: env.store, Replica: "a", Now: func() time.Time { return env.now }})
	require.NoError(t, env.r.Reload(t.Context()))
	env.fetcher.push(partnerBundle(t, 1), nil) // refresh hint: a minute
	require.NoError(t, env.r.Refresh(t.Context(), partner))
	l, err := env.store.Lease(t.Context(), leaseName(partner))
	require.NoError(t, err)
	require.Equal(t, "a", l.Holder)
	require.Equal(t, env.now.Add(90*time.Second).UnixNano(), l.ExpiresAt.UnixNano())
	st := env.status(t)
	require.Equal(t, "a", st.PolledBy)
	require.Less(t, st.NextAttempt.UnixNano(), l.ExpiresAt.UnixNano(), "the poller renews before its lease runs out")
}
