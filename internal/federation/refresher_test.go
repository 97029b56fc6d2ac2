package federation

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/finding"
)

var partner = spiffeid.RequireTrustDomainFromString("beta.test")

// scriptedFetcher answers polls from a queue of outcomes; an empty queue
// repeats the last one. It stands in for the partner's endpoint so the
// scheduling rules can be checked one poll at a time.
type scriptedFetcher struct {
	mu       sync.Mutex
	outcomes []outcome
	last     outcome
	calls    []string
}

type outcome struct {
	b       *spiffebundle.Bundle
	err     error
	ignored []bundle.Ignored
}

func (f *scriptedFetcher) push(b *spiffebundle.Bundle, err error) {
	f.pushOutcome(outcome{b: b, err: err})
}

func (f *scriptedFetcher) pushOutcome(o outcome) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outcomes = append(f.outcomes, o)
}

func (f *scriptedFetcher) Fetch(_ context.Context, _ Relationship, endpoint *url.URL, _ *spiffebundle.Bundle) (*bundle.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, endpoint.String())
	if len(f.outcomes) > 0 {
		f.last, f.outcomes = f.outcomes[0], f.outcomes[1:]
	}
	o := f.last
	if o.err != nil {
		return nil, o.err
	}
	return &bundle.Result{Bundle: o.b.Clone(), Ignored: o.ignored}, nil
}

func partnerBundle(t *testing.T, seq uint64) *spiffebundle.Bundle {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "beta"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	b := spiffebundle.New(partner)
	b.AddX509Authority(cert)
	b.SetRefreshHint(time.Minute)
	b.SetSequenceNumber(seq)
	return b
}

type refresherEnv struct {
	store   *sqlite.Store
	fetcher *scriptedFetcher
	r       *Refresher
	now     time.Time
}

func newRefresherEnv(t *testing.T, urls ...string) *refresherEnv {
	t.Helper()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "treaty.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	env := &refresherEnv{store: store, fetcher: &scriptedFetcher{}, now: time.Unix(1_800_000_000, 0)}
	env.r = NewRefresher(RefresherConfig{Store: store, Fetcher: env.fetcher, Now: func() time.Time { return env.now }})
	rel := datastore.Relationship{TrustDomain: partner, EndpointURLs: urls, Profile: "https_web"}
	_, err = store.CreateRelationship(t.Context(), rel, nil)
	require.NoError(t, err)
	require.NoError(t, env.r.Reload(t.Context()))
	return env
}

func (env *refresherEnv) status(t *testing.T) Status {
	t.Helper()
	all := env.r.Status()
	require.Len(t, all, 1)
	return all[0]
}

func TestRefreshStoresKeepsAndRefuses(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	ctx := t.Context()
	require.Equal(t, StateNeverFetched, env.status(t).State)

	v2 := partnerBundle(t, 2)
	env.fetcher.push(v2, nil)
	changed := env.r.Changed()
	require.NoError(t, env.r.Refresh(ctx, partner))
	<-changed // closed by the store of a new bundle
	st := env.status(t)
	require.Equal(t, StateHealthy, st.State)
	require.Equal(t, uint64(2), st.Sequence)
	require.Equal(t, time.Minute, st.RefreshHint)
	stored, err := env.store.FederatedBundle(ctx, partner)
	require.NoError(t, err)
	updated := stored.UpdatedAt

	// The same bundle again: no write.
	env.now = env.now.Add(time.Minute)
	env.fetcher.push(v2, nil)
	require.NoError(t, env.r.Refresh(ctx, partner))
	stored, err = env.store.FederatedBundle(ctx, partner)
	require.NoError(t, err)
	require.Equal(t, updated, stored.UpdatedAt, "an unchanged bundle is not rewritten")

	// A lower sequence is a rollback: refused, ours kept, status says so.
	env.fetcher.push(partnerBundle(t, 1), nil)
	err = env.r.Refresh(ctx, partner)
	require.ErrorIs(t, err, ErrRollback)
	require.ErrorContains(t, err, "lower than the 2 we hold")
	st = env.status(t)
	require.Equal(t, StateFailing, st.State)
	require.Equal(t, "rollback", st.LastReason)
	stored, err = env.store.FederatedBundle(ctx, partner)
	require.NoError(t, err)
	require.Equal(t, uint64(2), stored.Sequence)

	// A failing partner leaves the last good bundle; after three poll
	// intervals without success the relationship is stale.
	env.fetcher.push(nil, errors.New("connection refused"))
	require.Error(t, env.r.Refresh(ctx, partner))
	require.Equal(t, 2, env.status(t).ConsecutiveFailures)
	env.now = env.now.Add(4 * time.Minute)
	require.Equal(t, StateStale, env.status(t).State)
	stored, err = env.store.FederatedBundle(ctx, partner)
	require.NoError(t, err)
	require.Equal(t, uint64(2), stored.Sequence)

	// Recovery.
	env.fetcher.push(partnerBundle(t, 3), nil)
	require.NoError(t, env.r.Refresh(ctx, partner))
	st = env.status(t)
	require.Equal(t, StateHealthy, st.State)
	require.Zero(t, st.ConsecutiveFailures)
	require.Equal(t, uint64(3), st.Sequence)
}

// Ignored entries of a partner's bundle (SPIFFE Trust Domain and Bundle
// §4.2) are in the partner's status until a fetch no longer has them.
func TestRefreshReportsIgnoredEntries(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	ctx := t.Context()
	ignored := []bundle.Ignored{{Index: 1, Use: "x509-svid", Check: bundle.CheckKeyMatch, Severity: finding.Fail, Message: "keys[1] (x509-svid) ignored: its key members are not the public key of the x5c certificate"}}
	env.fetcher.pushOutcome(outcome{b: partnerBundle(t, 1), ignored: ignored})
	require.NoError(t, env.r.Refresh(ctx, partner))
	st := env.status(t)
	require.Equal(t, StateHealthy, st.State, "the rest of the bundle is used")
	require.Equal(t, ignored, st.Ignored)

	env.fetcher.push(nil, errors.New("connection refused"))
	require.Error(t, env.r.Refresh(ctx, partner))
	require.Equal(t, ignored, env.status(t).Ignored, "a failed fetch says nothing new about the document")

	env.fetcher.push(partnerBundle(t, 2), nil)
	require.NoError(t, env.r.Refresh(ctx, partner))
	require.Empty(t, env.status(t).Ignored)
}

func TestRefreshFailsOverToTheNextEndpoint(t *testing.T) {
	env := newRefresherEnv(t, "https://primary.example", "https://fallback.example")
	env.fetcher.push(nil, errors.New("primary down"))
	env.fetcher.push(partnerBundle(t, 1), nil)
	require.NoError(t, env.r.Refresh(t.Context(), partner))
	require.Equal(t, []string{"https://primary.example", "https://fallback.example"}, env.fetcher.calls)
	require.Equal(t, "https://fallback.example", env.status(t).Endpoint)
}

func TestScheduleFollowsHintAndBacksOff(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	env.fetcher.push(partnerBundle(t, 1), nil)
	require.NoError(t, env.r.Refresh(t.Context(), partner))
	next := env.status(t).NextAttempt.Sub(env.now)
	require.InDelta(t, float64(time.Minute), float64(next), float64(6*time.Second), "poll at the hint, with jitter")

	env.fetcher.push(nil, errors.New("down"))
	var waits []time.Duration
	for range 4 {
		_ = env.r.Refresh(t.Context(), partner)
		waits = append(waits, env.status(t).NextAttempt.Sub(env.now))
	}
	require.InDelta(t, float64(5*time.Second), float64(waits[0]), float64(time.Second))
	require.InDelta(t, float64(10*time.Second), float64(waits[1]), float64(time.Second))
	require.InDelta(t, float64(20*time.Second), float64(waits[2]), float64(2*time.Second))
	require.LessOrEqual(t, waits[3], time.Minute+6*time.Second, "backoff is capped at the poll interval")
}

func TestRunPollsOnItsOwnAndStops(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	env.fetcher.push(partnerBundle(t, 1), nil)
	changed := env.r.Changed()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- env.r.Run(ctx) }()
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not poll a new relationship")
	}
	cancel()
	require.NoError(t, <-done)
}

func TestReloadForgetsDeletedRelationships(t *testing.T) {
	env := newRefresherEnv(t, "https://beta.example")
	require.NoError(t, env.store.DeleteRelationship(t.Context(), partner))
	require.NoError(t, env.r.Reload(t.Context()))
	require.Empty(t, env.r.Status())
	require.ErrorIs(t, env.r.Refresh(t.Context(), partner), datastore.ErrNotFound)
}
