package adminapi

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/profile"
)

// TestStatusNamesTheOnboardingFile: the status of a relationship from an
// onboarding file names the file.
func TestStatusNamesTheOnboardingFile(t *testing.T) {
	var refresher Refresher
	conn, store := startWith(t, func(c *Config) { refresher = c.Refresher })
	ctx := t.Context()
	_, err := store.CreateRelationship(ctx, datastore.Relationship{
		TrustDomain: spiffeid.RequireTrustDomainFromString("beta.test"), EndpointURLs: []string{"https://127.0.0.1:1/"},
		Profile: string(profile.HTTPSWeb), ManagedBy: "onboarding:beta.yaml", CreatedAt: time.Now(), UpdatedAt: time.Now(),
	}, nil)
	require.NoError(t, err)
	require.NoError(t, refresher.Reload(ctx))

	raw, err := wireCall(t, conn)
	require.NoError(t, err)
	require.Len(t, raw.Relationships, 1)
	require.Equal(t, "onboarding:beta.yaml", raw.Relationships[0].ManagedBy)
}

func wireCall(t *testing.T, conn *grpc.ClientConn) (adminwire.StatusResponse, error) {
	t.Helper()
	st := &structpb.Struct{}
	var out adminwire.StatusResponse
	if err := conn.Invoke(t.Context(), adminwire.StatusMethod, &emptypb.Empty{}, st); err != nil {
		return out, err
	}
	return out, adminwire.FromStruct(st, &out)
}
