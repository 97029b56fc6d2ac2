package adminapi

import (
	"testing"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

func TestSignBundle(t *testing.T) {
	conn := start(t)
	out := &structpb.Struct{}
	require.NoError(t, conn.Invoke(t.Context(), adminwire.SignBundleMethod, &structpb.Struct{}, out))
	var resp adminwire.SignBundleResponse
	require.NoError(t, adminwire.FromStruct(out, &resp))

	local, err := bundlev1.NewBundleClient(conn).GetBundle(t.Context(), &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	held, err := bundlewire.FromProto(local)
	require.NoError(t, err)
	fp, err := bundle.Fingerprint(held)
	require.NoError(t, err)
	require.Equal(t, td.Name(), resp.TrustDomain)
	require.Equal(t, fp, resp.Fingerprint)

	signed, err := signedbundle.Parse([]byte(resp.File))
	require.NoError(t, err)
	d, _, err := signed.Accept(held, "")
	require.NoError(t, err)
	require.Equal(t, signedbundle.Unchanged, d)
}
