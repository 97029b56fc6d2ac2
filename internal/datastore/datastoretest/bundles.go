package datastoretest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

var (
	localTD   = spiffeid.RequireTrustDomainFromString("alpha.test")
	partnerTD = spiffeid.RequireTrustDomainFromString("beta.test")
)

func (x suite) testOpenIsIdempotentAndRefusesNewerSchema(t *testing.T) {
	s, path := x.openStore(t)
	require.NoError(t, s.Close())

	s2, err := path.Open(t)
	require.NoError(t, err)
	_, err = rawDB(t, s2).ExecContext(t.Context(), `INSERT INTO schema_version (version) VALUES (99)`)
	require.NoError(t, err)
	require.NoError(t, s2.Close())

	_, err = path.Open(t)
	require.ErrorContains(t, err, "newer than this treaty supports")
}

func (x suite) testLocalBundleSequenceNeverGoesBackwards(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	_, err := s.LocalBundle(ctx)
	require.ErrorIs(t, err, datastore.ErrNotFound)

	commit := func(seq uint64, doc string) error {
		return s.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
			TrustDomain: localTD, Document: []byte(doc), Sequence: seq, UpdatedAt: time.Now(),
		}})
	}
	require.NoError(t, commit(1, "one"))
	require.NoError(t, commit(1, "one"), "same sequence and content is a no-op")
	require.ErrorIs(t, commit(1, "other"), datastore.ErrSequenceRegression)
	require.ErrorIs(t, commit(0, "zero"), datastore.ErrSequenceRegression)
	require.NoError(t, commit(2, "two"))

	require.NoError(t, s.Close())
	s2, err := path.Open(t)
	require.NoError(t, err)
	defer s2.Close()
	b, err := s2.LocalBundle(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), b.Sequence)
	require.Equal(t, "two", string(b.Document))

	err = s2.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
		TrustDomain: partnerTD, Document: []byte("x"), Sequence: 3,
	}})
	require.ErrorContains(t, err, `belongs to trust domain "alpha.test"`)
}

func (x suite) testCommitAuthoritiesIsAtomic(t *testing.T) {
	s, _ := x.openStore(t)
	ctx := t.Context()
	active := datastore.Authority{Kind: datastore.KindX509, ID: "aa", State: datastore.StateActive,
		KeyName: "x509-aa", PublicKey: []byte{1}, NotBefore: time.Unix(10, 0), NotAfter: time.Unix(20, 0)}
	prepared := active
	prepared.ID, prepared.State, prepared.KeyName = "bb", datastore.StatePrepared, "x509-bb"
	prepared.PublishedSequence = 1 << 63 // the whole uint64 range survives
	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{Put: []datastore.Authority{active, prepared}}))

	// A second active authority breaks the one-active rule: nothing of the
	// change (journal, bundle) may be written.
	bad := active
	bad.ID = "cc"
	err := s.CommitAuthorities(ctx, datastore.AuthorityChange{
		Put:         []datastore.Authority{bad},
		Journal:     []datastore.JournalEvent{{At: time.Now(), Kind: datastore.KindX509, AuthorityID: "cc", Event: "activated"}},
		LocalBundle: &datastore.Bundle{TrustDomain: localTD, Document: []byte("d"), Sequence: 1},
	})
	require.Error(t, err)
	_, err = s.LocalBundle(ctx)
	require.ErrorIs(t, err, datastore.ErrNotFound)
	events, err := s.Journal(ctx, 10)
	require.NoError(t, err)
	require.Empty(t, events)

	// Swapping active and prepared in one change works.
	active.State, prepared.State = datastore.StateOld, datastore.StateActive
	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{
		Put:     []datastore.Authority{prepared, active},
		Journal: []datastore.JournalEvent{{At: time.Now(), Kind: datastore.KindX509, AuthorityID: "bb", Event: "activated"}},
	}))
	got, err := s.ListAuthorities(ctx)
	require.NoError(t, err)
	require.Len(t, got, 2)
	states := map[string]datastore.AuthorityState{}
	for _, a := range got {
		states[a.ID] = a.State
		if a.ID == "bb" {
			require.Equal(t, uint64(1<<63), a.PublishedSequence)
		}
	}
	require.Equal(t, map[string]datastore.AuthorityState{"aa": datastore.StateOld, "bb": datastore.StateActive}, states)
	require.Equal(t, time.Unix(20, 0).UTC(), got[0].NotAfter)

	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{Delete: []datastore.AuthorityRef{{Kind: datastore.KindX509, ID: "aa"}}}))
	got, err = s.ListAuthorities(ctx)
	require.NoError(t, err)
	require.Len(t, got, 1)
}

func (x suite) testFederatedBundles(t *testing.T) {
	s, _ := x.openStore(t)
	ctx := t.Context()
	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
		TrustDomain: localTD, Document: []byte("local"), Sequence: 1,
	}}))
	b := datastore.Bundle{TrustDomain: partnerTD, Document: []byte("v1"), Sequence: 7, UpdatedAt: time.Unix(5, 0)}

	require.ErrorIs(t, s.UpdateFederatedBundle(ctx, b), datastore.ErrNotFound)
	require.NoError(t, s.CreateFederatedBundle(ctx, b))
	require.ErrorIs(t, s.CreateFederatedBundle(ctx, b), datastore.ErrAlreadyExists)
	b.Document = []byte("v2")
	require.NoError(t, s.UpdateFederatedBundle(ctx, b))
	got, err := s.FederatedBundle(ctx, partnerTD)
	require.NoError(t, err)
	require.Equal(t, "v2", string(got.Document))
	require.Equal(t, uint64(7), got.Sequence)

	require.ErrorContains(t, s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: localTD, Document: []byte("x")}),
		"local trust domain")
	_, err = s.FederatedBundle(ctx, localTD)
	require.ErrorIs(t, err, datastore.ErrNotFound)

	gamma := spiffeid.RequireTrustDomainFromString("gamma.test")
	require.NoError(t, s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: gamma, Document: []byte("g")}))
	n, err := s.CountBundles(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	page, err := s.ListFederatedBundles(ctx, "", 1)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, partnerTD, page[0].TrustDomain)
	page, err = s.ListFederatedBundles(ctx, page[0].TrustDomain.Name(), 0)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, gamma, page[0].TrustDomain)

	require.NoError(t, s.DeleteFederatedBundle(ctx, partnerTD))
	require.ErrorIs(t, s.DeleteFederatedBundle(ctx, partnerTD), datastore.ErrNotFound)
}

// SPIFFE Trust Domain and Bundle §4.1.1: spiffe_sequence needs at least 64
// bits of precision. The store keeps all 64, and orders them unsigned
// across the sign bit of the engines' signed integer column.
func (x suite) testSequenceKeepsAll64Bits(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	const (
		belowSign = uint64(1)<<63 - 1
		aboveSign = uint64(1)<<63 + 1
		largest   = ^uint64(0)
	)
	commit := func(seq uint64, doc string) error {
		return s.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
			TrustDomain: localTD, Document: []byte(doc), Sequence: seq,
		}})
	}
	require.NoError(t, commit(belowSign, "a"))
	require.NoError(t, commit(aboveSign, "b"), "2^63+1 is above 2^63-1")
	require.ErrorIs(t, commit(belowSign, "c"), datastore.ErrSequenceRegression)
	require.NoError(t, s.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: partnerTD, Document: []byte("p"), Sequence: largest}))

	require.NoError(t, s.Close())
	s2, err := path.Open(t)
	require.NoError(t, err)
	defer s2.Close()
	local, err := s2.LocalBundle(ctx)
	require.NoError(t, err)
	require.Equal(t, aboveSign, local.Sequence)
	fed, err := s2.FederatedBundle(ctx, partnerTD)
	require.NoError(t, err)
	require.Equal(t, largest, fed.Sequence)
}

// Two stores on one database (two replicas) raise the local bundle's
// sequence at the same time, each reading the stored bundle and writing
// the next one: every write either commits a sequence above every
// sequence committed before it or is refused as a regression, so the
// sequence never repeats and never goes down.
func (x suite) testConcurrentLocalBundleCommitsNeverGoBackwards(t *testing.T) {
	first, db := x.openStore(t)
	second, err := db.Open(t)
	require.NoError(t, err)
	t.Cleanup(func() { _ = second.Close() })
	ctx := t.Context()
	require.NoError(t, first.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
		TrustDomain: localTD, Document: []byte("0"), Sequence: 1,
	}}))

	const rounds = 40
	var mu sync.Mutex
	var committed []uint64
	var wg sync.WaitGroup
	for w, s := range []datastore.Store{first, second} {
		wg.Go(func() {
			for i := range rounds {
				cur, err := s.LocalBundle(ctx)
				if !assert.NoError(t, err) {
					return
				}
				next := cur.Sequence + 1
				err = s.CommitAuthorities(ctx, datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
					TrustDomain: localTD, Document: fmt.Appendf(nil, "writer %d round %d", w, i), Sequence: next,
				}})
				if errors.Is(err, datastore.ErrSequenceRegression) {
					continue
				}
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				committed = append(committed, next)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NotEmpty(t, committed)
	seen := map[uint64]bool{}
	for _, seq := range committed {
		require.False(t, seen[seq], "sequence %d committed twice", seq)
		seen[seq] = true
	}
	final, err := first.LocalBundle(ctx)
	require.NoError(t, err)
	require.Equal(t, slices.Max(committed), final.Sequence)
}

// A change computed from an older authority revision is refused whole;
// every change raises the revision, guarded or not.
func (x suite) testAuthorityRevisionGuardsChanges(t *testing.T) {
	s, path := x.openStore(t)
	ctx := t.Context()
	rev, err := s.AuthorityRevision(ctx)
	require.NoError(t, err)
	require.Zero(t, rev)
	auth := datastore.Authority{Kind: datastore.KindJWT, ID: "k1", State: datastore.StatePrepared, KeyName: "jwt-k1", PublicKey: []byte("pk"),
		NotBefore: time.Unix(1, 0).UTC(), NotAfter: time.Unix(2, 0).UTC()}
	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{Put: []datastore.Authority{auth}, IfRevision: &rev}))

	stale := rev
	auth.ID, auth.KeyName, auth.State = "k2", "jwt-k2", datastore.StateOld
	err = s.CommitAuthorities(ctx, datastore.AuthorityChange{Put: []datastore.Authority{auth}, IfRevision: &stale,
		LocalBundle: &datastore.Bundle{TrustDomain: localTD, Document: []byte("doc"), Sequence: 1}})
	require.ErrorIs(t, err, datastore.ErrAuthoritiesChanged)
	all, err := s.ListAuthorities(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1, "nothing of the refused change was written")
	_, err = s.LocalBundle(ctx)
	require.ErrorIs(t, err, datastore.ErrNotFound)

	require.NoError(t, s.CommitAuthorities(ctx, datastore.AuthorityChange{Journal: []datastore.JournalEvent{{Event: "x"}}}), "unguarded")
	s = reopen(t, s, path)
	rev, err = s.AuthorityRevision(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(2), rev)
}
