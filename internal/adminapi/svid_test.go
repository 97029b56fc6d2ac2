package adminapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bundles returns the X.509 and JWT bundles alpha.test publishes now.
func bundles(t *testing.T, conn *grpc.ClientConn) (*x509bundle.Bundle, *jwtbundle.Bundle) {
	t.Helper()
	b, err := bundlev1.NewBundleClient(conn).GetBundle(t.Context(), &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	xb, jb := x509bundle.New(td), jwtbundle.New(td)
	for _, a := range b.GetX509Authorities() {
		cert, err := x509.ParseCertificate(a.GetAsn1())
		require.NoError(t, err)
		xb.AddX509Authority(cert)
	}
	for _, k := range b.GetJwtAuthorities() {
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		require.NoError(t, err)
		require.NoError(t, jb.AddJWTAuthority(k.GetKeyId(), pub))
	}
	return xb, jb
}

// TestLocalAuthorityJWT rotates the JWT authority through the API: a
// prepared key is published before it signs, the activated one signs, and
// a revoked one is gone from the bundle, so tokens it signed stop
// verifying.
func TestLocalAuthorityJWT(t *testing.T) {
	conn := start(t)
	ctx := t.Context()
	client := localauthorityv1.NewLocalAuthorityClient(conn)
	mint := svidv1.NewSVIDClient(conn)
	id := &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/web"}

	st, err := client.GetJWTAuthorityState(ctx, &localauthorityv1.GetJWTAuthorityStateRequest{})
	require.NoError(t, err)
	oldID := st.GetActive().GetAuthorityId()
	oldToken, err := mint.MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{Id: id, Audience: []string{"db"}})
	require.NoError(t, err)

	prep, err := client.PrepareJWTAuthority(ctx, &localauthorityv1.PrepareJWTAuthorityRequest{})
	require.NoError(t, err)
	newID := prep.GetPreparedAuthority().GetAuthorityId()
	require.NotEqual(t, oldID, newID)
	_, jb := bundles(t, conn)
	require.True(t, jb.HasJWTAuthority(newID), "a prepared key is published before it signs")

	_, err = client.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: oldID})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "only the prepared authority can be activated: %v", err)
	act, err := client.ActivateJWTAuthority(ctx, &localauthorityv1.ActivateJWTAuthorityRequest{AuthorityId: newID})
	require.NoError(t, err)
	require.Equal(t, newID, act.GetActivatedAuthority().GetAuthorityId())

	_, err = client.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: oldID})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "an untainted authority is not revoked: %v", err)
	_, err = client.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = client.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: oldID})
	require.NoError(t, err)
	rev, err := client.RevokeJWTAuthority(ctx, &localauthorityv1.RevokeJWTAuthorityRequest{AuthorityId: oldID})
	require.NoError(t, err)
	require.Equal(t, oldID, rev.GetRevokedAuthority().GetAuthorityId())

	_, jb = bundles(t, conn)
	require.False(t, jb.HasJWTAuthority(oldID), "a revoked key leaves the bundle")
	_, err = jwtsvid.ParseAndValidate(oldToken.GetSvid().GetToken(), jb, []string{"db"})
	require.Error(t, err, "a token of the revoked key no longer verifies")
	newToken, err := mint.MintJWTSVID(ctx, &svidv1.MintJWTSVIDRequest{Id: id, Audience: []string{"db"}})
	require.NoError(t, err)
	svid, err := jwtsvid.ParseAndValidate(newToken.GetSvid().GetToken(), jb, []string{"db"})
	require.NoError(t, err, "the active key signs")
	require.Equal(t, "spiffe://alpha.test/web", svid.ID.String())
}

func csr(t *testing.T, uris ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.CertificateRequest{}
	for _, raw := range uris {
		u, err := url.Parse(raw)
		require.NoError(t, err)
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	require.NoError(t, err)
	return der
}

func TestMintX509SVID(t *testing.T) {
	conn := start(t)
	client := svidv1.NewSVIDClient(conn)
	resp, err := client.MintX509SVID(t.Context(), &svidv1.MintX509SVIDRequest{Csr: csr(t, "spiffe://alpha.test/device/1"), Ttl: 600})
	require.NoError(t, err)
	var chain []*x509.Certificate
	for _, der := range resp.GetSvid().GetCertChain() {
		cert, err := x509.ParseCertificate(der)
		require.NoError(t, err)
		chain = append(chain, cert)
	}
	xb, _ := bundles(t, conn)
	id, _, err := x509svid.Verify(chain, xb)
	require.NoError(t, err, "the SVID chains to the published bundle")
	require.Equal(t, "spiffe://alpha.test/device/1", id.String())
	require.WithinDuration(t, time.Now().Add(10*time.Minute), chain[0].NotAfter, time.Minute)

	tampered := csr(t, "spiffe://alpha.test/device/1")
	tampered[len(tampered)-1] ^= 1
	for _, tc := range []struct {
		name   string
		req    *svidv1.MintX509SVIDRequest
		phrase string
	}{
		{name: "fail/no CSR", req: &svidv1.MintX509SVIDRequest{}, phrase: "missing CSR"},
		{name: "fail/garbage CSR", req: &svidv1.MintX509SVIDRequest{Csr: []byte{1, 2}}, phrase: "malformed CSR"},
		{name: "fail/bad signature", req: &svidv1.MintX509SVIDRequest{Csr: tampered}, phrase: "CSR"},
		{name: "fail/another trust domain", req: &svidv1.MintX509SVIDRequest{Csr: csr(t, "spiffe://beta.test/device/1")}, phrase: "not in this server's trust domain"},
		{name: "fail/the trust domain's own ID", req: &svidv1.MintX509SVIDRequest{Csr: csr(t, "spiffe://alpha.test")}, phrase: "the trust domain's own ID"},
		{name: "fail/two URI SANs", req: &svidv1.MintX509SVIDRequest{Csr: csr(t, "spiffe://alpha.test/a", "spiffe://alpha.test/b")}, phrase: "exactly one URI SAN"},
		{name: "fail/not a SPIFFE ID", req: &svidv1.MintX509SVIDRequest{Csr: csr(t, "https://alpha.test/a")}, phrase: "URI SAN is invalid"},
		{name: "fail/negative TTL", req: &svidv1.MintX509SVIDRequest{Csr: csr(t, "spiffe://alpha.test/a"), Ttl: -1}, phrase: "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.MintX509SVID(t.Context(), tc.req)
			requireStatus(t, err, codes.InvalidArgument, tc.phrase)
		})
	}
}

func TestMintJWTSVIDRefuses(t *testing.T) {
	client := svidv1.NewSVIDClient(start(t))
	for _, tc := range []struct {
		name   string
		req    *svidv1.MintJWTSVIDRequest
		phrase string
	}{
		{name: "fail/no ID", req: &svidv1.MintJWTSVIDRequest{Audience: []string{"db"}}, phrase: "invalid SPIFFE ID"},
		{name: "fail/another trust domain", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "beta.test", Path: "/web"}, Audience: []string{"db"}},
			phrase: "not in this server's trust domain"},
		{name: "fail/no audience", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/web"}}, phrase: "audience"},
		{name: "fail/negative TTL", req: &svidv1.MintJWTSVIDRequest{Id: &types.SPIFFEID{TrustDomain: "alpha.test", Path: "/web"}, Audience: []string{"db"}, Ttl: -5},
			phrase: "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.MintJWTSVID(t.Context(), tc.req)
			requireStatus(t, err, codes.InvalidArgument, tc.phrase)
		})
	}
}
