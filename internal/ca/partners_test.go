package ca

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/datastore"
)

var (
	beta  = spiffeid.RequireTrustDomainFromString("beta.test")
	gamma = spiffeid.RequireTrustDomainFromString("gamma.test")
)

// receiptsEnv is a CA whose partners' receipts are read from its own store;
// it has prepared a successor at half life (bundle sequence 2).
func receiptsEnv(t *testing.T) (*env, *CA, *AuthorityInfo) {
	e := newEnv(t)
	e.cfg.Receipts = receiptsOf{e}
	c := e.open()
	e.now = e.now.Add(12*time.Hour + time.Minute)
	require.NoError(t, c.Rotate(t.Context()))
	prepared := c.State(datastore.KindX509).Prepared
	require.NotNil(t, prepared)
	require.Equal(t, uint64(2), seq(t, c))
	return e, c, prepared
}

// receiptsOf reads the receipts of the store env has open now.
type receiptsOf struct{ e *env }

func (r receiptsOf) ListReceipts(ctx context.Context) ([]datastore.Receipt, error) {
	return r.e.store.ListReceipts(ctx)
}

// fetched records that td, a partner whose bundle we hold, fetched the
// bundle with sequence seq now.
func (e *env) fetched(t *testing.T, td spiffeid.TrustDomain, seq uint64) {
	t.Helper()
	require.NoError(t, e.store.SetFederatedBundle(t.Context(), datastore.Bundle{TrustDomain: td, Document: []byte(`{"keys":[]}`), Sequence: 1}))
	require.NoError(t, e.store.PutReceipts(t.Context(), []datastore.Receipt{{TrustDomain: td, Sequence: seq, FetchedAt: e.now}}))
}

func TestActivationWaitsForPartnersWithReceipts(t *testing.T) {
	e, c, prepared := receiptsEnv(t)
	e.fetched(t, beta, 2)
	e.fetched(t, gamma, 1) // gamma went offline before the successor was published

	e.now = e.now.Add(8 * time.Hour) // five sixths, published long enough
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Prepared.ID, "activated although gamma lacks it")
	cov, ok, err := c.NextAuthorityCoverage(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(2), cov.Sequence)
	require.Equal(t, []string{"gamma.test"}, cov.Lacking())
	require.Len(t, cov.Have, 1)
	// The JWT key prepared with it waits for gamma as well: a JWT-SVID it
	// signs would be refused for an unknown key ID.
	jwtPrepared := c.State(datastore.KindJWT).Prepared
	require.NotNil(t, jwtPrepared, "activated although gamma lacks it")
	cov, ok, err = c.NextAuthorityCoverage(t.Context(), datastore.KindJWT)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, jwtPrepared.ID, cov.AuthorityID)
	require.Equal(t, []string{"gamma.test"}, cov.Lacking())

	e.now = e.now.Add(time.Hour)
	e.fetched(t, gamma, 2) // gamma is back
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Active.ID)
	require.Equal(t, jwtPrepared.ID, c.State(datastore.KindJWT).Active.ID)
	_, ok, err = c.NextAuthorityCoverage(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	require.False(t, ok, "nothing prepared any more")
}

func TestActivationAtTheDeadlineWithoutPartners(t *testing.T) {
	e, c, prepared := receiptsEnv(t)
	e.fetched(t, gamma, 1)
	e.now = e.now.Add(11*time.Hour - time.Minute - time.Second) // an hour and a second before the active authority expires
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Prepared.ID)
	e.now = e.now.Add(time.Second) // the active authority could no longer sign an SVID of full lifetime
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Active.ID, "the deadline goes ahead without gamma")
}

func TestPartnersWithoutReceiptsAreUnknown(t *testing.T) {
	e, c, prepared := receiptsEnv(t)
	e.now = e.now.Add(8 * time.Hour)
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Active.ID, "no receipts: the rule without receipts")
}

// The sequence that first published the prepared authority is stored with
// it: after a restart, and after later bundles (here one another replica
// published), a partner served that sequence still has it.
func TestCoverageAfterRestartCountsFromTheStoredSequence(t *testing.T) {
	e, c, prepared := receiptsEnv(t)
	e.publishedElsewhere(t, c, 5)
	c = e.open()
	require.GreaterOrEqual(t, seq(t, c), uint64(5))
	e.fetched(t, beta, 2)
	e.fetched(t, gamma, 1)
	cov, ok, err := c.NextAuthorityCoverage(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, prepared.ID, cov.AuthorityID)
	require.Equal(t, uint64(2), cov.Sequence)
	require.Equal(t, []string{"gamma.test"}, cov.Lacking())
}

// An authority stored without its first sequence (by a treaty before
// schema 9) counts from the bundle published when first asked: later than
// the real one, never earlier.
func TestCoverageWithoutAStoredSequenceCountsFromThePublishedBundle(t *testing.T) {
	e, c, prepared := receiptsEnv(t)
	stored, err := e.store.ListAuthorities(t.Context())
	require.NoError(t, err)
	for i := range stored {
		stored[i].PublishedSequence = 0
	}
	require.NoError(t, e.store.CommitAuthorities(t.Context(), datastore.AuthorityChange{Put: stored}))
	e.publishedElsewhere(t, c, 5)
	c = e.open()
	e.fetched(t, beta, 2)
	cov, ok, err := c.NextAuthorityCoverage(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, prepared.ID, cov.AuthorityID)
	require.Equal(t, seq(t, c), cov.Sequence)
	require.Equal(t, []string{"beta.test"}, cov.Lacking())
}

// publishedElsewhere stores c's bundle again with sequence seq, as another
// replica would after a change of its own.
func (e *env) publishedElsewhere(t *testing.T, c *CA, seq uint64) {
	t.Helper()
	b := c.Bundle()
	b.SetSequenceNumber(seq)
	doc, err := bundle.Marshal(b)
	require.NoError(t, err)
	require.NoError(t, e.store.CommitAuthorities(t.Context(), datastore.AuthorityChange{LocalBundle: &datastore.Bundle{
		TrustDomain: b.TrustDomain(), Document: doc, Sequence: seq, UpdatedAt: e.now,
	}}))
}

// With an upstream CA, partners trust the upstream root their bundle holds:
// a new X.509 authority (an intermediate) waits for nobody, while the JWT
// key prepared with it still does.
func TestUpstreamX509AuthorityWaitsForNobody(t *testing.T) {
	e := newEnv(t)
	e.now = time.Now()
	certFile, keyFile, _ := writeRoot(t, t.TempDir(), e.now.Add(30*24*time.Hour))
	up, err := LoadUpstream(certFile, keyFile, "")
	require.NoError(t, err)
	e.cfg.Upstream, e.cfg.Receipts = up, receiptsOf{e}
	c := e.open()
	e.fetched(t, gamma, seq(t, c)) // then gamma goes offline
	e.now = e.now.Add(12*time.Hour + time.Minute)
	require.NoError(t, c.Rotate(t.Context()))
	prepared := c.State(datastore.KindX509).Prepared
	require.NotNil(t, prepared)
	_, ok, err := c.NextAuthorityCoverage(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	require.False(t, ok, "nothing for partners to fetch")
	cov, ok, err := c.NextAuthorityCoverage(t.Context(), datastore.KindJWT)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, []string{"gamma.test"}, cov.Lacking())

	e.now = e.now.Add(8 * time.Hour)
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Active.ID, "the intermediate is activated on schedule")
	require.NotNil(t, c.State(datastore.KindJWT).Prepared, "the JWT key waits for gamma")
}
