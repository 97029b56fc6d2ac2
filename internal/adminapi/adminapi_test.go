package adminapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/federation"
)

var td = spiffeid.RequireTrustDomainFromString("alpha.test")

// start runs the admin API on a real unix socket over a real store and CA.
func start(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, _ := startWith(t, nil)
	return conn
}

// startWith is start with the configuration adjusted by edit (nil: none);
// it also returns the store.
func startWith(t *testing.T, edit func(*Config)) (*grpc.ClientConn, *sqlite.Store) {
	t.Helper()
	c, store := catest.New(t, td)

	// Socket paths must stay short: use a fresh directory under /tmp.
	sockDir, err := os.MkdirTemp("", "treaty-admin") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "private", "admin.sock")
	refresher := federation.NewRefresher(federation.RefresherConfig{Store: store, Fetcher: federation.NewFetcher(federation.FetcherConfig{})})
	cfg := Config{SocketPath: socket, Bundle: c, Authorities: c, SVIDs: c, Store: store, Relationships: store, Refresher: refresher}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	require.NoError(t, err)

	info, err := os.Stat(socket)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	dirInfo, err := os.Stat(filepath.Dir(socket))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dirInfo.Mode().Perm())
	return conn, store
}

func caCert(t *testing.T, isCA bool, uri string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "partner"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: isCA,
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return der
}

func TestBundleService(t *testing.T) {
	conn := start(t)
	ctx := t.Context()
	client := bundlev1.NewBundleClient(conn)

	own, err := client.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	require.Equal(t, "alpha.test", own.GetTrustDomain())
	require.Len(t, own.GetX509Authorities(), 1)
	require.Len(t, own.GetJwtAuthorities(), 1)
	require.NotZero(t, own.GetJwtAuthorities()[0].GetExpiresAt())
	require.Equal(t, uint64(1), own.GetSequenceNumber())
	require.Equal(t, int64(300), own.GetRefreshHint())

	masked, err := client.GetBundle(ctx, &bundlev1.GetBundleRequest{OutputMask: &types.BundleMask{SequenceNumber: true}})
	require.NoError(t, err)
	require.Empty(t, masked.GetX509Authorities())
	require.Equal(t, uint64(1), masked.GetSequenceNumber())

	good := &types.Bundle{TrustDomain: "beta.test", X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, true, "spiffe://beta.test")}}, SequenceNumber: 4}
	tests := []struct {
		name string
		in   *types.Bundle
		code codes.Code
		msg  string
	}{
		{"ok/partner", good, codes.OK, ""},
		{"fail/own trust domain", &types.Bundle{TrustDomain: "alpha.test", X509Authorities: good.X509Authorities}, codes.InvalidArgument, "own trust domain"},
		{"fail/own trust domain as SPIFFE ID", &types.Bundle{TrustDomain: "spiffe://alpha.test", X509Authorities: good.X509Authorities}, codes.InvalidArgument, "own trust domain"},
		{"fail/not a ca", &types.Bundle{TrustDomain: "gamma.test", X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, false, "")}}}, codes.InvalidArgument, "x509_authorities[0]: certificate"},
		{"ok/certificate naming another trust domain is kept", &types.Bundle{TrustDomain: "zeta.test", X509Authorities: good.X509Authorities}, codes.OK, ""},
		{"fail/garbage certificate", &types.Bundle{TrustDomain: "gamma.test", X509Authorities: []*types.X509Certificate{{Asn1: []byte{1}}}}, codes.InvalidArgument, "not a valid X.509 certificate"},
		{"fail/no authorities", &types.Bundle{TrustDomain: "gamma.test"}, codes.InvalidArgument, "no X.509 or JWT authorities"},
		{"fail/bad trust domain", &types.Bundle{TrustDomain: "Bad Name"}, codes.InvalidArgument, "trust_domain"},
		{"fail/jwt without kid", &types.Bundle{TrustDomain: "gamma.test", JwtAuthorities: []*types.JWTKey{{PublicKey: []byte{1}}}}, codes.InvalidArgument, "key_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{tt.in}})
			require.NoError(t, err)
			st := resp.GetResults()[0].GetStatus()
			require.Equal(t, int32(tt.code), st.GetCode(), st.GetMessage())
			require.Contains(t, st.GetMessage(), tt.msg)
		})
	}

	_, err = client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "gamma.test"})
	require.Equal(t, codes.NotFound, status.Code(err), "failed writes store nothing")
	zeta, err := client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "zeta.test"})
	require.NoError(t, err, "a certificate naming beta.test is kept under the trust domain the request names")
	require.Equal(t, good.GetX509Authorities()[0].GetAsn1(), zeta.GetX509Authorities()[0].GetAsn1())
	del, err := client.BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{TrustDomains: []string{"zeta.test"}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), del.GetResults()[0].GetStatus().GetCode())
	got, err := client.GetFederatedBundle(ctx, &bundlev1.GetFederatedBundleRequest{TrustDomain: "beta.test"})
	require.NoError(t, err)
	require.Equal(t, good.GetX509Authorities()[0].GetAsn1(), got.GetX509Authorities()[0].GetAsn1())
	require.Equal(t, uint64(4), got.GetSequenceNumber())

	create, err := client.BatchCreateFederatedBundle(ctx, &bundlev1.BatchCreateFederatedBundleRequest{Bundle: []*types.Bundle{good}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.AlreadyExists), create.GetResults()[0].GetStatus().GetCode())

	upd, err := client.BatchUpdateFederatedBundle(ctx, &bundlev1.BatchUpdateFederatedBundleRequest{
		Bundle: []*types.Bundle{{TrustDomain: "beta.test", SequenceNumber: 9}}, InputMask: &types.BundleMask{SequenceNumber: true},
	})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), upd.GetResults()[0].GetStatus().GetCode(), upd.GetResults()[0].GetStatus().GetMessage())
	require.Equal(t, uint64(9), upd.GetResults()[0].GetBundle().GetSequenceNumber())
	require.Len(t, upd.GetResults()[0].GetBundle().GetX509Authorities(), 1, "masked update keeps the authorities")

	count, err := client.CountBundles(ctx, &bundlev1.CountBundlesRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(2), count.GetCount())

	for _, name := range []string{"delta.test", "epsilon.test"} {
		b := &types.Bundle{TrustDomain: name, X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, true, "")}}}
		_, err := client.BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{b}})
		require.NoError(t, err)
	}
	page, err := client.ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageSize: 2})
	require.NoError(t, err)
	require.Len(t, page.GetBundles(), 2)
	require.Equal(t, "delta.test", page.GetNextPageToken())
	page, err = client.ListFederatedBundles(ctx, &bundlev1.ListFederatedBundlesRequest{PageSize: 2, PageToken: page.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, page.GetBundles(), 1)
	require.Empty(t, page.GetNextPageToken())

	del, err = client.BatchDeleteFederatedBundle(ctx, &bundlev1.BatchDeleteFederatedBundleRequest{TrustDomains: []string{"beta.test", "beta.test", "alpha.test"}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), del.GetResults()[0].GetStatus().GetCode())
	require.Equal(t, int32(codes.NotFound), del.GetResults()[1].GetStatus().GetCode())
	require.Equal(t, int32(codes.InvalidArgument), del.GetResults()[2].GetStatus().GetCode())
}

func TestAppendBundle(t *testing.T) {
	conn := start(t)
	client := bundlev1.NewBundleClient(conn)
	b, err := client.AppendBundle(t.Context(), &bundlev1.AppendBundleRequest{X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, true, "")}}})
	require.NoError(t, err)
	require.Len(t, b.GetX509Authorities(), 2)
	require.Equal(t, uint64(2), b.GetSequenceNumber())
	_, err = client.AppendBundle(t.Context(), &bundlev1.AppendBundleRequest{X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, false, "")}}})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestLocalAuthorityService(t *testing.T) {
	conn := start(t)
	ctx := t.Context()
	client := localauthorityv1.NewLocalAuthorityClient(conn)
	bundles := bundlev1.NewBundleClient(conn)

	st, err := client.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	require.NoError(t, err)
	require.NotEmpty(t, st.GetActive().GetAuthorityId())
	require.Nil(t, st.GetPrepared())
	oldID := st.GetActive().GetAuthorityId()

	_, err = client.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: "x"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	_, err = client.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	prep, err := client.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	require.NoError(t, err)
	b, err := bundles.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	require.Len(t, b.GetX509Authorities(), 2)
	require.Equal(t, uint64(2), b.GetSequenceNumber())

	_, err = client.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: "wrong"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	act, err := client.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: prep.GetPreparedAuthority().GetAuthorityId()})
	require.NoError(t, err)
	require.Equal(t, prep.GetPreparedAuthority().GetAuthorityId(), act.GetActivatedAuthority().GetAuthorityId())

	_, err = client.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: oldID})
	require.NoError(t, err)
	b, err = bundles.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	tainted := 0
	for _, c := range b.GetX509Authorities() {
		if c.GetTainted() {
			tainted++
		}
	}
	require.Equal(t, 1, tainted)

	_, err = client.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: oldID})
	require.NoError(t, err)
	b, err = bundles.GetBundle(ctx, &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	require.Len(t, b.GetX509Authorities(), 1)
	require.Equal(t, uint64(3), b.GetSequenceNumber())

	jst, err := client.GetJWTAuthorityState(ctx, &localauthorityv1.GetJWTAuthorityStateRequest{})
	require.NoError(t, err)
	_, err = client.TaintJWTAuthority(ctx, &localauthorityv1.TaintJWTAuthorityRequest{AuthorityId: jst.GetActive().GetAuthorityId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "only an old JWT authority can be tainted")
}

func TestSecondServerOnSameSocketIsRefused(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "treaty-admin") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	defer os.RemoveAll(sockDir)
	socket := filepath.Join(sockDir, "admin.sock")
	s := &Server{cfg: Config{SocketPath: socket, SocketMode: 0o600}}
	l, err := s.Listen(t.Context())
	require.NoError(t, err)
	defer l.Close()
	_, err = s.Listen(t.Context())
	require.ErrorContains(t, err, "is in use")

	require.NoError(t, os.WriteFile(filepath.Join(sockDir, "file"), nil, 0o600))
	s.cfg.SocketPath = filepath.Join(sockDir, "file")
	_, err = s.Listen(t.Context())
	require.ErrorContains(t, err, "is not a socket")
}

func TestMutates(t *testing.T) {
	for method, want := range map[string]bool{
		"/spire.api.server.bundle.v1.Bundle/BatchSetFederatedBundle":              true,
		"/spire.api.server.entry.v1.Entry/BatchCreateEntry":                       true,
		"/spire.api.server.localauthority.v1.LocalAuthority/PrepareX509Authority": true,
		"/spire.api.server.bundle.v1.Bundle/GetFederatedBundle":                   false,
		"/spire.api.server.entry.v1.Entry/ListEntries":                            false,
		"/spire.api.server.entry.v1.Entry/CountEntries":                           false,
		"/treaty.admin.v1.Federation/Status":                                      false,
	} {
		require.Equal(t, want, mutates(method), method)
	}
}
