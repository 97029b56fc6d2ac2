package adminapi

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
)

// storeReceipts reads the receipts of the CA's store, once it is open.
type storeReceipts struct{ store *sqlite.Store }

func (r *storeReceipts) ListReceipts(ctx context.Context) ([]datastore.Receipt, error) {
	if r.store == nil {
		return []datastore.Receipt{}, nil
	}
	return r.store.ListReceipts(ctx)
}

// Activating an authority that a partner with a receipt lacks is
// refused with the partner named (what SPIRE's CLI shows), and goes ahead
// with the force header (treaty's CLI -force); the status report says who
// has it.
func TestActivateWaitsForPartnersUnlessForced(t *testing.T) {
	receipts := &storeReceipts{}
	c, store := catest.New(t, td, func(cfg *ca.Config) { cfg.Receipts = receipts })
	receipts.store = store
	conn, _ := startWith(t, func(cfg *Config) { cfg.Bundle, cfg.Authorities, cfg.SVIDs = c, c, c })
	client := localauthorityv1.NewLocalAuthorityClient(conn)
	ctx := t.Context()

	prep, err := client.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	require.NoError(t, err)
	id := prep.GetPreparedAuthority().GetAuthorityId()
	beta, gamma := spiffeid.RequireTrustDomainFromString("beta.test"), spiffeid.RequireTrustDomainFromString("gamma.test")
	for _, p := range []spiffeid.TrustDomain{beta, gamma} { // receipts count for partners whose bundle we hold
		require.NoError(t, store.SetFederatedBundle(ctx, datastore.Bundle{TrustDomain: p, Document: []byte(`{"keys":[]}`), Sequence: 1}))
	}
	require.NoError(t, store.PutReceipts(ctx, []datastore.Receipt{
		{TrustDomain: beta, Sequence: 1, FetchedAt: time.Now().Add(-26 * time.Hour)},
		{TrustDomain: gamma, Sequence: 2, FetchedAt: time.Now()},
	}))

	st, err := wireCall(t, conn)
	require.NoError(t, err)
	require.Equal(t, &adminwire.NextAuthority{AuthorityID: id, Sequence: 2, Partners: []adminwire.Receipt{
		{TrustDomain: "beta.test", Sequence: 1, FetchedAt: st.NextAuthority.Partners[0].FetchedAt},
		{TrustDomain: "gamma.test", Sequence: 2, FetchedAt: st.NextAuthority.Partners[1].FetchedAt, HasNextAuthority: true},
	}}, st.NextAuthority)

	_, err = client.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: id})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "1 of 2 partners have not fetched")
	require.Contains(t, status.Convert(err).Message(), "beta.test (last fetched sequence 1, 26h ago)")
	require.Contains(t, status.Convert(err).Message(), "-force")
	require.Equal(t, id, c.State(datastore.KindX509).Prepared.ID, "not activated")

	forced := metadata.AppendToOutgoingContext(ctx, adminwire.ForceHeader, "true")
	act, err := client.ActivateX509Authority(forced, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: id})
	require.NoError(t, err)
	require.Equal(t, id, act.GetActivatedAuthority().GetAuthorityId())
	st, err = wireCall(t, conn)
	require.NoError(t, err)
	require.Nil(t, st.NextAuthority, "nothing prepared any more")

	// A JWT key waits the same way: beta would refuse JWT-SVIDs it signs.
	jwtPrep, err := client.PrepareJWTAuthority(ctx, &localauthorityv1.PrepareJWTAuthorityRequest{})
	require.NoError(t, err)
	kid := jwtPrep.GetPreparedAuthority().GetAuthorityId()
	st, err = wireCall(t, conn)
	require.NoError(t, err)
	require.NotNil(t, st.NextJWTAuthority)
	require.Equal(t, kid, st.NextJWTAuthority.AuthorityID)
	require.Equal(t, uint64(3), st.NextJWTAuthority.Sequence, "first published in the bundle after the X.509 one")
	_, err = client.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: kid})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "2 of 2 partners have not fetched")
	require.Contains(t, status.Convert(err).Message(), "treaty localauthority jwt activate -authorityID "+kid+" -force")
	require.Equal(t, kid, c.State(datastore.KindJWT).Prepared.ID, "not activated")
	_, err = client.ActivateJWTAuthority(forced, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: kid})
	require.NoError(t, err)
	require.Equal(t, kid, c.State(datastore.KindJWT).Active.ID)
}
