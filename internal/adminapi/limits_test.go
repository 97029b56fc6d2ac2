package adminapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// jwtKeys returns n JWT authorities sharing one public key.
func jwtKeys(t *testing.T, n int) []*types.JWTKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	require.NoError(t, err)
	keys := make([]*types.JWTKey, n)
	for i := range keys {
		keys[i] = &types.JWTKey{KeyId: fmt.Sprintf("k%d", i), PublicKey: der}
	}
	return keys
}

// TestBundleLimits: every call that takes a bundle refuses one over the
// limits of a bundle document (1000 keys, 1 MiB) with InvalidArgument
// naming the limit, and stores nothing.
func TestBundleLimits(t *testing.T) {
	conn := start(t)
	ctx := t.Context()
	client := bundlev1.NewBundleClient(conn)
	tooMany := &types.Bundle{TrustDomain: "beta.test", JwtAuthorities: jwtKeys(t, 1001)}
	tooBig := &types.Bundle{TrustDomain: "beta.test", X509Authorities: []*types.X509Certificate{{Asn1: make([]byte, 2<<20)}}}
	const many = "the bundle has 1001 authorities (0 X.509, 1001 JWT), over the limit of 1000 a bundle may hold; nothing was stored"

	for _, tc := range []struct {
		name string
		call func() (*types.Status, error)
		msg  string
	}{
		{name: "fail/set 1001 keys", msg: many, call: func() (*types.Status, error) {
			r, err := client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{tooMany}})
			return r.GetResults()[0].GetStatus(), err
		}},
		{name: "fail/create 1001 keys", msg: many, call: func() (*types.Status, error) {
			r, err := client.BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{Bundle: []*types.Bundle{tooMany}})
			return r.GetResults()[0].GetStatus(), err
		}},
		{name: "fail/set 2 MiB", msg: "over the limit of 1048576 (1 MiB) a bundle may take; nothing was stored", call: func() (*types.Status, error) {
			r, err := client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{tooBig}})
			return r.GetResults()[0].GetStatus(), err
		}},
		{name: "fail/relationship with a 1001-key bootstrap bundle", msg: many, call: func() (*types.Status, error) {
			r, err := trustdomainv1.NewTrustDomainClient(conn).BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
				FederationRelationships: []*types.FederationRelationship{{TrustDomain: "beta.test", BundleEndpointUrl: "https://beta.example/",
					BundleEndpointProfile: spiffeProfile("spiffe://beta.test/spire/server"), TrustDomainBundle: tooMany}},
			})
			return r.GetResults()[0].GetStatus(), err
		}},
		{name: "fail/append past 1000 keys", msg: "the local bundle holds 2 authorities; 999 more would make 1001, over the limit of 1000 a bundle may hold (partners would refuse it); nothing was appended", call: func() (*types.Status, error) {
			_, err := client.AppendBundle(ctx, &bundlev1.AppendBundleRequest{JwtAuthorities: jwtKeys(t, 999)})
			st := status.Convert(err)
			return &types.Status{Code: int32(st.Code()), Message: st.Message()}, nil //nolint:gosec // gRPC codes are small
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := tc.call()
			require.NoError(t, err)
			require.Equal(t, int32(codes.InvalidArgument), st.GetCode(), st.GetMessage())
			require.Contains(t, st.GetMessage(), tc.msg)
		})
	}

	count, err := client.CountBundles(ctx, &bundlev1.CountBundlesRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(1), count.GetCount(), "only the local bundle: nothing was stored")
	local, err := client.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	require.Len(t, local.GetJwtAuthorities(), 1, "nothing was appended")

	ok, err := client.AppendBundle(ctx, &bundlev1.AppendBundleRequest{JwtAuthorities: jwtKeys(t, 998)})
	require.NoError(t, err, "up to the limit is fine")
	require.Len(t, ok.GetJwtAuthorities(), 999)
}
