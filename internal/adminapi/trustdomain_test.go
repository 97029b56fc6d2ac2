package adminapi

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/profile"
)

func spiffeProfile(id string) *types.FederationRelationship_HttpsSpiffe {
	return &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: id}}
}

func TestTrustDomainService(t *testing.T) {
	conn := start(t)
	ctx := t.Context()
	client := trustdomainv1.NewTrustDomainClient(conn)

	// A port nothing listens on, so that refreshes fail fast.
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadURL := "https://" + l.Addr().String()
	require.NoError(t, l.Close())

	boot := &types.Bundle{TrustDomain: "beta.test", X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, true, "spiffe://beta.test")}}, SequenceNumber: 3}
	good := &types.FederationRelationship{TrustDomain: "beta.test", BundleEndpointUrl: deadURL,
		BundleEndpointProfile: spiffeProfile("spiffe://beta.test/spire/server"), TrustDomainBundle: boot}
	tests := []struct {
		name string
		in   *types.FederationRelationship
		code codes.Code
		msg  string
	}{
		{"ok/https_spiffe with bootstrap", good, codes.OK, ""},
		{"fail/exists", good, codes.AlreadyExists, "already exists"},
		{"fail/own trust domain", &types.FederationRelationship{TrustDomain: "alpha.test", BundleEndpointUrl: deadURL, BundleEndpointProfile: spiffeProfile("spiffe://alpha.test/x")}, codes.InvalidArgument, "own trust domain"},
		{"fail/http url", &types.FederationRelationship{TrustDomain: "gamma.test", BundleEndpointUrl: "http://x", BundleEndpointProfile: &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}}, codes.InvalidArgument, "must be an https:// URL"},
		{"fail/no profile", &types.FederationRelationship{TrustDomain: "gamma.test", BundleEndpointUrl: deadURL}, codes.InvalidArgument, "bundle_endpoint_profile is required"},
		{"fail/bad endpoint id", &types.FederationRelationship{TrustDomain: "gamma.test", BundleEndpointUrl: deadURL, BundleEndpointProfile: spiffeProfile("not-an-id")}, codes.InvalidArgument, "endpoint_spiffe_id"},
		{"fail/endpoint id in another trust domain", &types.FederationRelationship{TrustDomain: "gamma.test", BundleEndpointUrl: deadURL, BundleEndpointProfile: spiffeProfile("spiffe://delta.test/spire/server")}, codes.InvalidArgument,
			"spiffe://delta.test/spire/server is not in trust domain gamma.test; treaty requires the bundle endpoint to belong to the trust domain it serves"},
		{"fail/bootstrap for another trust domain", &types.FederationRelationship{TrustDomain: "gamma.test", BundleEndpointUrl: deadURL, BundleEndpointProfile: spiffeProfile("spiffe://gamma.test/s"), TrustDomainBundle: boot}, codes.InvalidArgument, "trust_domain_bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{FederationRelationships: []*types.FederationRelationship{tt.in}})
			require.NoError(t, err)
			st := resp.GetResults()[0].GetStatus()
			require.Equal(t, int32(tt.code), st.GetCode(), st.GetMessage())
			require.Contains(t, st.GetMessage(), tt.msg)
		})
	}

	got, err := client.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "beta.test"})
	require.NoError(t, err)
	require.Equal(t, deadURL, got.GetBundleEndpointUrl())
	require.Equal(t, "spiffe://beta.test/spire/server", got.GetHttpsSpiffe().GetEndpointSpiffeId())
	require.Equal(t, uint64(3), got.GetTrustDomainBundle().GetSequenceNumber(), "the bootstrap bundle was stored")

	list, err := client.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetFederationRelationships(), 1)

	upd, err := client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{{TrustDomain: "beta.test", BundleEndpointUrl: deadURL + "/bundle"}},
		InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true},
	})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), upd.GetResults()[0].GetStatus().GetCode(), upd.GetResults()[0].GetStatus().GetMessage())
	require.Equal(t, deadURL+"/bundle", upd.GetResults()[0].GetFederationRelationship().GetBundleEndpointUrl())
	require.Equal(t, "spiffe://beta.test/spire/server", upd.GetResults()[0].GetFederationRelationship().GetHttpsSpiffe().GetEndpointSpiffeId(), "masked update keeps the profile")

	upd, err = client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{{TrustDomain: "beta.test", BundleEndpointProfile: spiffeProfile("spiffe://delta.test/spire/server")}},
		InputMask:               &types.FederationRelationshipMask{BundleEndpointProfile: true},
	})
	require.NoError(t, err)
	require.Equal(t, int32(codes.InvalidArgument), upd.GetResults()[0].GetStatus().GetCode(), "an update may not move the endpoint to another trust domain")
	require.Contains(t, upd.GetResults()[0].GetStatus().GetMessage(), "is not in trust domain beta.test")

	// Refreshing a partner that is down explains itself.
	_, err = client.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "beta.test"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "refused")
	_, err = client.RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "nobody.test"})
	require.Equal(t, codes.NotFound, status.Code(err))

	var st structpb.Struct
	require.NoError(t, conn.Invoke(ctx, adminwire.StatusMethod, &emptypb.Empty{}, &st))
	rels := st.GetFields()["relationships"].GetListValue().GetValues()
	require.Len(t, rels, 1)
	fields := rels[0].GetStructValue().GetFields()
	require.Equal(t, "beta.test", fields["trust_domain"].GetStringValue())
	require.Equal(t, "stale", fields["state"].GetStringValue(), "never fetched, but a bootstrap bundle is in use")
	require.Equal(t, "connection_refused", fields["last_reason"].GetStringValue())
	require.Empty(t, fields["managed_by"].GetStringValue(), "made through the API")

	del, err := client.BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{TrustDomains: []string{"beta.test", "beta.test"}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), del.GetResults()[0].GetStatus().GetCode())
	require.Equal(t, int32(codes.NotFound), del.GetResults()[1].GetStatus().GetCode())
}

// TestRelationshipURLWithUserinfo checks that a bundle endpoint URL with a
// user name or password never enters (SPIFFE Federation §5.2.1.1,
// §5.2.2.1), and that one stored before that rule is never shown or
// recorded with its password.
func TestRelationshipURLWithUserinfo(t *testing.T) {
	var audit bytes.Buffer
	conn, store := startWith(t, func(c *Config) { c.AuditLog = &audit })
	ctx := t.Context()
	client := trustdomainv1.NewTrustDomainClient(conn)
	web := &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
	rel := func(td, u string) *types.FederationRelationship {
		return &types.FederationRelationship{TrustDomain: td, BundleEndpointUrl: u, BundleEndpointProfile: web}
	}

	created, err := client.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{
			rel("beta.test", "https://admin:s3cr3t@beta.example/"),
			rel("gamma.test", "https://s3cr3t@gamma.example/"),
			rel("delta.test", "https://delta.example/bundle?td=delta#x"),
		},
	})
	require.NoError(t, err)
	for i, tc := range []struct {
		name  string
		code  codes.Code
		shown string
	}{
		{"fail/user and password", codes.InvalidArgument, `"https://admin:xxxxx@beta.example/"`},
		{"fail/user name alone", codes.InvalidArgument, `"https://xxxxx@gamma.example/"`},
		{"ok/query and fragment are not constrained", codes.OK, ""},
	} {
		t.Run("create/"+tc.name, func(t *testing.T) {
			st := created.GetResults()[i].GetStatus()
			require.Equal(t, int32(tc.code), st.GetCode(), st.GetMessage())
			if tc.code != codes.OK {
				require.Contains(t, st.GetMessage(), "bundle_endpoint_url "+tc.shown+": "+federation.ErrEndpointUserinfo.Error())
				require.NotContains(t, st.GetMessage(), "s3cr3t")
			}
		})
	}

	t.Run("update/fail/password refused, stored URL kept", func(t *testing.T) {
		upd, err := client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
			FederationRelationships: []*types.FederationRelationship{{TrustDomain: "delta.test", BundleEndpointUrl: "https://u:s3cr3t@delta.example/"}},
			InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true},
		})
		require.NoError(t, err)
		st := upd.GetResults()[0].GetStatus()
		require.Equal(t, int32(codes.InvalidArgument), st.GetCode(), st.GetMessage())
		require.Contains(t, st.GetMessage(), federation.ErrEndpointUserinfo.Error())
		require.NotContains(t, st.GetMessage(), "s3cr3t")
		got, err := client.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "delta.test"})
		require.NoError(t, err)
		require.Equal(t, "https://delta.example/bundle?td=delta#x", got.GetBundleEndpointUrl())
	})

	// A relationship stored by an older version, with a password.
	old := datastore.Relationship{TrustDomain: spiffeid.RequireTrustDomainFromString("old.test"), EndpointURLs: []string{"https://admin:s3cr3t@old.example/"},
		Profile: string(profile.HTTPSWeb), CreatedAt: time.Now(), UpdatedAt: time.Now()}
	_, err = store.CreateRelationship(ctx, old, nil)
	require.NoError(t, err)

	t.Run("stored/ok/list and get show it redacted", func(t *testing.T) {
		list, err := client.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{})
		require.NoError(t, err)
		var urls []string
		for _, r := range list.GetFederationRelationships() {
			urls = append(urls, r.GetBundleEndpointUrl())
		}
		require.Contains(t, urls, "https://admin:xxxxx@old.example/")
		got, err := client.GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "old.test"})
		require.NoError(t, err)
		require.Equal(t, "https://admin:xxxxx@old.example/", got.GetBundleEndpointUrl())
	})
	t.Run("stored/fail/an update that keeps the URL says to fix it", func(t *testing.T) {
		upd, err := client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
			FederationRelationships: []*types.FederationRelationship{{TrustDomain: "old.test", BundleEndpointProfile: spiffeProfile("spiffe://old.test/s")}},
			InputMask:               &types.FederationRelationshipMask{BundleEndpointProfile: true},
		})
		require.NoError(t, err)
		st := upd.GetResults()[0].GetStatus()
		require.Equal(t, int32(codes.InvalidArgument), st.GetCode(), st.GetMessage())
		require.Contains(t, st.GetMessage(), federation.ErrEndpointUserinfo.Error())
	})
	t.Run("stored/ok/an update to a clean URL fixes it", func(t *testing.T) {
		upd, err := client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
			FederationRelationships: []*types.FederationRelationship{{TrustDomain: "old.test", BundleEndpointUrl: "https://old.example/"}},
			InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true},
		})
		require.NoError(t, err)
		require.Equal(t, int32(codes.OK), upd.GetResults()[0].GetStatus().GetCode(), upd.GetResults()[0].GetStatus().GetMessage())
	})

	require.Contains(t, audit.String(), "https://xxxxx@beta.example/", "the refused request is audited")
	require.NotContains(t, audit.String(), "s3cr3t", "the audit log never records the password")
}

// One batch mixes invalid, duplicate and good relationships: each result
// is at its request position, and the good ones are stored although they
// share a transaction with the failures.
func TestBatchCreateKeepsEachOutcome(t *testing.T) {
	conn := start(t)
	ctx := t.Context()
	client := trustdomainv1.NewTrustDomainClient(conn)
	web := &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
	rel := func(td string) *types.FederationRelationship {
		return &types.FederationRelationship{TrustDomain: td, BundleEndpointUrl: "https://" + td + "/", BundleEndpointProfile: web}
	}
	resp, err := client.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
		FederationRelationships: []*types.FederationRelationship{
			rel("one.test"), {TrustDomain: "bad.test", BundleEndpointUrl: "http://bad.test/", BundleEndpointProfile: web},
			rel("two.test"), rel("one.test"), rel("three.test"),
		}})
	require.NoError(t, err)
	want := []codes.Code{codes.OK, codes.InvalidArgument, codes.OK, codes.AlreadyExists, codes.OK}
	require.Len(t, resp.GetResults(), len(want))
	for i, code := range want {
		st := resp.GetResults()[i].GetStatus()
		require.Equal(t, int32(code), st.GetCode(), "result %d: %s", i, st.GetMessage())
		if code == codes.OK {
			require.Equal(t, []string{"one.test", "", "two.test", "", "three.test"}[i], resp.GetResults()[i].GetFederationRelationship().GetTrustDomain())
		}
	}
	list, err := client.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetFederationRelationships(), 3)
}
