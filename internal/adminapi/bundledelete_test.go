package adminapi

import (
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
)

// TestBatchDeleteFederatedBundleModes checks the three modes as SPIRE's
// Bundle API has them: restrict refuses while an entry federates with the
// bundle, dissociate removes the federation from the entries, delete
// deletes the entries.
func TestBatchDeleteFederatedBundleModes(t *testing.T) {
	tests := []struct {
		name      string
		mode      bundlev1.BatchDeleteFederatedBundleRequest_Mode
		code      codes.Code
		msg       string
		bundle    bool     // the bundle is still stored afterwards
		remaining []string // entries' federatesWith afterwards, by entry
	}{
		{name: "fail/restrict with a federating entry", mode: bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT,
			code: codes.FailedPrecondition, msg: "1 registration entry federates with it", bundle: true,
			remaining: []string{"beta.test,gamma.test", "*", ""}},
		{name: "ok/dissociate", mode: bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE,
			code: codes.OK, remaining: []string{"gamma.test", "*", ""}},
		{name: "ok/delete", mode: bundlev1.BatchDeleteFederatedBundleRequest_DELETE,
			code: codes.OK, remaining: []string{"*", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, store := startWith(t, func(c *Config) { c.Entries = c.Store.(*sqlite.Store) })
			ctx := t.Context()
			client := bundlev1.NewBundleClient(conn)
			for _, name := range []string{"beta.test", "gamma.test"} {
				b := &types.Bundle{TrustDomain: name, X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, true, "")}}}
				_, err := client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{b}})
				require.NoError(t, err)
			}
			for i, fw := range [][]string{{"beta.test", "gamma.test"}, {datastore.FederateWithAll}, nil} {
				_, err := store.CreateEntry(ctx, datastore.Entry{
					SPIFFEID:      spiffeid.RequireFromSegments(td, "w", string(rune('a'+i))),
					Selectors:     []datastore.Selector{{Type: "unix", Value: "uid:1000"}},
					FederatesWith: fw,
				})
				require.NoError(t, err)
			}

			resp, err := client.BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{TrustDomains: []string{"beta.test"}, Mode: tt.mode})
			require.NoError(t, err)
			st := resp.GetResults()[0].GetStatus()
			require.Equal(t, int32(tt.code), st.GetCode(), st.GetMessage())
			require.Contains(t, st.GetMessage(), tt.msg)

			_, err = client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "beta.test"})
			if tt.bundle {
				require.NoError(t, err)
			} else {
				require.Equal(t, codes.NotFound, status.Code(err))
			}
			entries, err := store.ListEntries(ctx)
			require.NoError(t, err)
			var got []string
			for _, e := range entries {
				got = append(got, strings.Join(e.FederatesWith, ","))
			}
			require.ElementsMatch(t, tt.remaining, got)
		})
	}
}

func TestBatchDeleteFederatedBundleRefusesUnknownMode(t *testing.T) {
	conn := start(t)
	_, err := bundlev1.NewBundleClient(conn).BatchDeleteFederatedBundle(t.Context(), &bundlev1.BatchDeleteFederatedBundleRequest{TrustDomains: []string{"beta.test"}, Mode: 7})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}
