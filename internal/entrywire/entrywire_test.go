package entrywire

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

func TestToProto(t *testing.T) {
	e := datastore.Entry{
		ID:            "e1",
		SPIFFEID:      spiffeid.RequireFromString("spiffe://alpha.test/web"),
		ParentID:      spiffeid.RequireFromString("spiffe://alpha.test/node"),
		Selectors:     []datastore.Selector{{Type: "unix", Value: "uid:1000"}},
		FederatesWith: []string{"beta.test"},
		X509SVIDTTL:   time.Hour,
		JWTSVIDTTL:    5 * time.Minute,
		DNSNames:      []string{"web.local"},
		Hint:          "web",
		CreatedAt:     time.Unix(1700000000, 0),
	}
	all := ToProto(e, nil)
	require.Equal(t, "alpha.test", all.GetSpiffeId().GetTrustDomain())
	require.Equal(t, "/node", all.GetParentId().GetPath())
	require.Equal(t, "uid:1000", all.GetSelectors()[0].GetValue())
	require.Equal(t, int32(3600), all.GetX509SvidTtl())
	require.Equal(t, int32(300), all.GetJwtSvidTtl())
	require.Equal(t, []string{"web.local"}, all.GetDnsNames())
	require.Equal(t, int64(1700000000), all.GetCreatedAt())
	require.Zero(t, all.GetExpiresAt(), "no expiry set is 0, not year 1")

	masked := ToProto(e, &types.EntryMask{Hint: true})
	require.Equal(t, "e1", masked.GetId(), "the ID is always there")
	require.Equal(t, "web", masked.GetHint())
	require.Nil(t, masked.GetSpiffeId())
	require.Empty(t, masked.GetSelectors())

	e.CreatedAt = time.Time{}
	require.Zero(t, ToProto(e, nil).GetCreatedAt(), "an unknown creation time is 0, not year 1")
	require.Nil(t, IDToProto(spiffeid.ID{}))
}
