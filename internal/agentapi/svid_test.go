package agentapi

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
)

// svidEntries are the entries of the SVID tests: "web" is the agent's,
// with DNS names and its own TTLs; "db" uses the defaults; "other" is
// another agent's.
func svidEntries() []datastore.Entry {
	web := testEntry("web", testAgentStr, "spiffe://alpha.test/web")
	web.DNSNames = []string{"web.alpha.test"}
	web.X509SVIDTTL, web.JWTSVIDTTL = 10*time.Minute, 2*time.Minute
	return []datastore.Entry{
		web,
		testEntry("db", testAgentStr, "spiffe://alpha.test/db"),
		testEntry("other", "spiffe://alpha.test/spire/agent/other", "spiffe://alpha.test/other"),
	}
}

func newSVIDClient(t *testing.T) svidv1.SVIDClient {
	t.Helper()
	c, _ := catest.New(t, entryTD)
	x := newTestIndex(svidEntries()...)
	x.now = time.Now // the CA signs with the real clock
	s := &svidService{index: x, caller: fixedCaller(entryNode), signer: c}
	return svidv1.NewSVIDClient(serveServices(t, func(g *grpc.Server) { svidv1.RegisterSVIDServer(g, s) }))
}

// testCSR returns a CSR as spire-agent makes it (subject C=US,O=SPIRE, the
// entry's ID as URI SAN) for a new P-256 key.
func testCSR(t *testing.T, uri string) ([]byte, crypto.PublicKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(uri)
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}}, URIs: []*url.URL{u},
	}, key)
	require.NoError(t, err)
	return der, key.Public()
}

func TestBatchNewX509SVID(t *testing.T) {
	c := newSVIDClient(t)
	good, pub := testCSR(t, "spiffe://alpha.test/anything")
	badSignature := append([]byte(nil), good...)
	badSignature[len(badSignature)-5] ^= 0xff
	params := []*svidv1.NewX509SVIDParams{
		{EntryId: "web", Csr: good},
		{EntryId: "db", Csr: good},
		{Csr: good},
		{EntryId: "web"},
		{EntryId: "other", Csr: good},
		{EntryId: "nope", Csr: good},
		{EntryId: "web", Csr: []byte("garbage")},
		{EntryId: "web", Csr: badSignature},
	}
	want := []struct {
		code codes.Code
		msg  string
	}{
		{codes.OK, "OK"},
		{codes.OK, "OK"},
		{codes.InvalidArgument, "missing entry ID"},
		{codes.InvalidArgument, "missing CSR"},
		{codes.NotFound, "entry not found or not authorized"},
		{codes.NotFound, "entry not found or not authorized"},
		{codes.InvalidArgument, "malformed CSR"},
		{codes.InvalidArgument, "invalid CSR signature"},
	}
	resp, err := c.BatchNewX509SVID(t.Context(), &svidv1.BatchNewX509SVIDRequest{Params: params})
	require.NoError(t, err)
	require.Len(t, resp.GetResults(), len(params), "one result per parameter")
	for i, r := range resp.GetResults() {
		require.NotNil(t, r.GetStatus(), "result %d", i)
		require.Equal(t, int32(want[i].code), r.GetStatus().GetCode(), "result %d: %s", i, r.GetStatus().GetMessage())
		require.Contains(t, r.GetStatus().GetMessage(), want[i].msg, "result %d", i)
		if want[i].code != codes.OK {
			require.Nil(t, r.GetSvid(), "result %d", i)
		}
	}

	web := parseSVID(t, resp.GetResults()[0].GetSvid().GetCertChain())
	require.Equal(t, "spiffe://alpha.test/web", web.URIs[0].String(), "the entry's ID, not the CSR's")
	require.Len(t, web.URIs, 1)
	require.Equal(t, []string{"web.alpha.test"}, web.DNSNames)
	require.Equal(t, pub, web.PublicKey)
	require.InDelta(t, 10*time.Minute, time.Until(web.NotAfter), float64(time.Minute), "the entry's X509-SVID TTL")
	require.Equal(t, web.NotAfter.Unix(), resp.GetResults()[0].GetSvid().GetExpiresAt())
	require.Equal(t, "/web", resp.GetResults()[0].GetSvid().GetId().GetPath())

	db := parseSVID(t, resp.GetResults()[1].GetSvid().GetCertChain())
	require.Equal(t, "spiffe://alpha.test/db", db.URIs[0].String())
	require.Greater(t, time.Until(db.NotAfter), 10*time.Minute+time.Minute, "the CA's default TTL")
}

func parseSVID(t *testing.T, chain [][]byte) *x509.Certificate {
	t.Helper()
	require.NotEmpty(t, chain, "an OK result carries a chain")
	leaf, err := x509.ParseCertificate(chain[0])
	require.NoError(t, err)
	return leaf
}

func TestBatchNewX509SVIDRefused(t *testing.T) {
	t.Run("fail/no parameters", func(t *testing.T) {
		_, err := newSVIDClient(t).BatchNewX509SVID(t.Context(), &svidv1.BatchNewX509SVIDRequest{})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	})
	t.Run("fail/caller refused", func(t *testing.T) {
		s := &svidService{index: newTestIndex(svidEntries()...), caller: func(context.Context) (datastore.AttestedNode, error) {
			return datastore.AttestedNode{}, status.Error(codes.PermissionDenied, "agent is banned")
		}}
		c := svidv1.NewSVIDClient(serveServices(t, func(g *grpc.Server) { svidv1.RegisterSVIDServer(g, s) }))
		csr, _ := testCSR(t, "spiffe://alpha.test/web")
		_, err := c.BatchNewX509SVID(t.Context(), &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{{EntryId: "web", Csr: csr}}})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
		_, err = c.NewJWTSVID(t.Context(), &svidv1.NewJWTSVIDRequest{EntryId: "web", Audience: []string{"a"}})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})
}

func TestNewJWTSVID(t *testing.T) {
	c := newSVIDClient(t)
	tests := []struct {
		name     string
		req      *svidv1.NewJWTSVIDRequest
		code     codes.Code
		path     string
		lifetime time.Duration
	}{
		{"ok/entry's TTL", &svidv1.NewJWTSVIDRequest{EntryId: "web", Audience: []string{"db", "cache"}}, codes.OK, "/web", 2 * time.Minute},
		{"ok/default TTL", &svidv1.NewJWTSVIDRequest{EntryId: "db", Audience: []string{"web"}}, codes.OK, "/db", 0},
		{"fail/no audience", &svidv1.NewJWTSVIDRequest{EntryId: "web"}, codes.InvalidArgument, "", 0},
		{"fail/another agent's entry", &svidv1.NewJWTSVIDRequest{EntryId: "other", Audience: []string{"a"}}, codes.NotFound, "", 0},
		{"fail/unknown entry", &svidv1.NewJWTSVIDRequest{EntryId: "nope", Audience: []string{"a"}}, codes.NotFound, "", 0},
		{"fail/no entry ID", &svidv1.NewJWTSVIDRequest{Audience: []string{"a"}}, codes.NotFound, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.NewJWTSVID(t.Context(), tt.req)
			require.Equal(t, tt.code, status.Code(err), "%v", err)
			if tt.code != codes.OK {
				return
			}
			svid := resp.GetSvid()
			require.Equal(t, tt.path, svid.GetId().GetPath())
			// What spire-agent v1.15.3 requires of the response.
			require.NotZero(t, svid.GetIssuedAt())
			require.NotZero(t, svid.GetExpiresAt())
			require.LessOrEqual(t, svid.GetIssuedAt(), svid.GetExpiresAt())
			if tt.lifetime != 0 {
				require.InDelta(t, tt.lifetime.Seconds(), float64(svid.GetExpiresAt()-svid.GetIssuedAt()), 2)
			}
			tok, err := jwt.ParseSigned(svid.GetToken(), []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.RS256, jose.PS256})
			require.NoError(t, err)
			var claims jwt.Claims
			require.NoError(t, tok.UnsafeClaimsWithoutVerification(&claims))
			require.Equal(t, "spiffe://alpha.test"+tt.path, claims.Subject)
			require.Equal(t, jwt.Audience(tt.req.GetAudience()), claims.Audience)
		})
	}
}
