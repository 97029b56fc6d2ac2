package adminapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
)

// The tests in this file replay the calls spire-controller-manager v0.6.4
// makes (pkg/spireapi), with the fields it sets and the answers it checks.

// probeEntry is the entry spire-controller-manager creates to learn which
// entry fields the server supports (entryClient.GetUnsupportedFields).
func probeEntry() *types.Entry {
	id := &types.SPIFFEID{TrustDomain: "alpha.test", Path: fieldProbePath}
	return &types.Entry{
		ParentId: id, SpiffeId: id,
		Selectors:   []*types.Selector{{Type: "a", Value: "1"}},
		X509SvidTtl: 60, JwtSvidTtl: 60, StoreSvid: true, Hint: "hint",
	}
}

func TestEntryFieldProbe(t *testing.T) {
	client := startEntries(t)
	ctx := t.Context()
	probe := func() *entryv1.BatchCreateEntryResponse_Result {
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{probeEntry()}})
		require.NoError(t, err)
		require.Len(t, resp.GetResults(), 1)
		return resp.GetResults()[0]
	}

	r := probe()
	require.Equal(t, int32(codes.OK), r.GetStatus().GetCode(), r.GetStatus().GetMessage())
	got := r.GetEntry()
	require.NotEmpty(t, got.GetId(), "the manager deletes the probe by the ID in the answer")
	require.Equal(t, int32(60), got.GetJwtSvidTtl(), "jwt_svid_ttl is supported")
	require.Equal(t, "hint", got.GetHint(), "hint is supported")
	require.False(t, got.GetStoreSvid(), "store_svid is answered unset: treaty does not support it")

	t.Run("ok/a leftover probe answers AlreadyExists with the entry", func(t *testing.T) {
		again := probe()
		require.Equal(t, int32(codes.AlreadyExists), again.GetStatus().GetCode())
		require.Equal(t, got.GetId(), again.GetEntry().GetId())
	})

	del, err := client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{got.GetId()}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), del.GetResults()[0].GetStatus().GetCode())

	t.Run("fail/store_svid outside the probe is refused", func(t *testing.T) {
		e := workloadEntry("/stored", "1000")
		e.StoreSvid = true
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{e}})
		require.NoError(t, err)
		st := resp.GetResults()[0].GetStatus()
		require.Equal(t, int32(codes.InvalidArgument), st.GetCode())
		require.Contains(t, st.GetMessage(), "store_svid is not supported")
	})
}

func TestEntryCallerChosenID(t *testing.T) {
	client := startEntries(t)
	ctx := t.Context()
	tests := []struct {
		name string
		id   string
		code codes.Code
		msg  string
	}{
		{name: "ok/prefixed like spire-controller-manager", id: "scm.5b1c3f0e-8d2a-4f57-9a51-0d9b1a6c2e11", code: codes.OK},
		{name: "ok/letters digits dash underscore", id: "Web_01-a", code: codes.OK},
		{name: "fail/taken", id: "Web_01-a", code: codes.AlreadyExists, msg: "taken"},
		{name: "fail/slash", id: "scm/web", code: codes.InvalidArgument, msg: `contains '/'`},
		{name: "fail/space", id: "scm web", code: codes.InvalidArgument, msg: `contains ' '`},
		{name: "fail/too long", id: strings.Repeat("a", 256), code: codes.InvalidArgument, msg: "at most 255"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := workloadEntry("/svc", string(rune('a'+i)))
			e.Id = tt.id
			resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{e}})
			require.NoError(t, err)
			r := resp.GetResults()[0]
			require.Equal(t, int32(tt.code), r.GetStatus().GetCode(), r.GetStatus().GetMessage())
			require.Contains(t, r.GetStatus().GetMessage(), tt.msg)
			if tt.code == codes.OK {
				require.Equal(t, tt.id, r.GetEntry().GetId(), "the caller's ID is kept")
			}
		})
	}
}

// TestEntryReconcileRoundTrip is one reconcile of the entry reconciler: list
// all entries in pages of 200 without a mask, update with the full entry
// and no input mask, and read back exactly what was declared, so the next
// reconcile finds nothing to change.
func TestEntryReconcileRoundTrip(t *testing.T) {
	client := startEntries(t)
	ctx := t.Context()
	declared := workloadEntry("/web", "1000", "beta.test")
	declared.Id = "scm.0001"
	declared.DnsNames = []string{"web.alpha.test"}
	declared.Hint = "web"
	create(t, client, declared)
	bulk := make([]*types.Entry, 250)
	for i := range bulk {
		bulk[i] = workloadEntry("/bulk", strconv.Itoa(2000+i))
	}
	create(t, client, bulk...)

	list := func() map[string]*types.Entry {
		out := map[string]*types.Entry{}
		token := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 3, "250 entries fit in two pages of 200")
			resp, err := client.ListEntries(ctx, &entryv1.ListEntriesRequest{PageToken: token, PageSize: 200})
			require.NoError(t, err)
			for _, e := range resp.GetEntries() {
				out[e.GetId()] = e
			}
			if token = resp.GetNextPageToken(); token == "" {
				return out
			}
		}
	}
	all := list()
	require.Len(t, all, 251)

	// An update carries every field; unset ones (TTLs, admin) are reset.
	declared.X509SvidTtl, declared.FederatesWith = 600, []string{"gamma.test"}
	resp, err := client.BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{declared}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), resp.GetResults()[0].GetStatus().GetCode(), resp.GetResults()[0].GetStatus().GetMessage())

	got := list()["scm.0001"]
	require.NotNil(t, got)
	require.Equal(t, int32(600), got.GetX509SvidTtl())
	require.Zero(t, got.GetJwtSvidTtl(), "a zero TTL stays zero (the server default), as in SPIRE")
	require.Equal(t, []string{"gamma.test"}, got.GetFederatesWith())
	require.Equal(t, []string{"web.alpha.test"}, got.GetDnsNames())
	require.Equal(t, "web", got.GetHint())
	require.Equal(t, "/treaty", got.GetParentId().GetPath())
}

// TestRelationshipReconcileRoundTrip is one reconcile of the federation
// relationship reconciler: what it creates (with the bundle from the
// manifest) lists back equal (trust domain, URL, profile), so it sees no
// change on the next pass; an update without masks changes it.
func TestRelationshipReconcileRoundTrip(t *testing.T) {
	client := trustdomainv1.NewTrustDomainClient(start(t))
	ctx := t.Context()
	const url = "https://127.0.0.1:1/bundle"
	boot := &types.Bundle{TrustDomain: "beta.test", X509Authorities: []*types.X509Certificate{{Asn1: caCert(t, true, "spiffe://beta.test")}}}
	declared := []*types.FederationRelationship{
		{TrustDomain: "beta.test", BundleEndpointUrl: url, BundleEndpointProfile: spiffeProfile("spiffe://beta.test/spire/server"), TrustDomainBundle: boot},
		{TrustDomain: "gamma.test", BundleEndpointUrl: "https://gamma.test", BundleEndpointProfile: &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}},
	}
	created, err := client.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{FederationRelationships: declared})
	require.NoError(t, err)
	for _, r := range created.GetResults() {
		require.Equal(t, int32(codes.OK), r.GetStatus().GetCode(), r.GetStatus().GetMessage())
	}

	list := func() []*types.FederationRelationship {
		var out []*types.FederationRelationship
		token := ""
		for {
			resp, err := client.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{PageToken: token, PageSize: 1})
			require.NoError(t, err)
			out = append(out, resp.GetFederationRelationships()...)
			if token = resp.GetNextPageToken(); token == "" {
				return out
			}
		}
	}
	got := list()
	require.Len(t, got, 2)
	for i, want := range declared {
		require.Equal(t, want.GetTrustDomain(), got[i].GetTrustDomain())
		require.Equal(t, want.GetBundleEndpointUrl(), got[i].GetBundleEndpointUrl(), "the URL lists back unchanged, or the manager updates it forever")
		require.Equal(t, want.GetHttpsSpiffe().GetEndpointSpiffeId(), got[i].GetHttpsSpiffe().GetEndpointSpiffeId())
		require.Equal(t, want.GetHttpsWeb() != nil, got[i].GetHttpsWeb() != nil)
	}
	require.Equal(t, boot.GetX509Authorities()[0].GetAsn1(), got[0].GetTrustDomainBundle().GetX509Authorities()[0].GetAsn1())
	require.Nil(t, got[1].GetTrustDomainBundle(), "no bundle until the first fetch")

	update := &types.FederationRelationship{TrustDomain: "gamma.test", BundleEndpointUrl: "https://gamma.test:8443/b",
		BundleEndpointProfile: spiffeProfile("spiffe://gamma.test/spire/server")}
	upd, err := client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{FederationRelationships: []*types.FederationRelationship{update}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.OK), upd.GetResults()[0].GetStatus().GetCode(), upd.GetResults()[0].GetStatus().GetMessage())
	got = list()
	require.Equal(t, update.GetBundleEndpointUrl(), got[1].GetBundleEndpointUrl())
	require.Equal(t, "spiffe://gamma.test/spire/server", got[1].GetHttpsSpiffe().GetEndpointSpiffeId())
}

// TestWebhookCertificate replays what spire-controller-manager does in
// Kubernetes mode for its admission webhook: it reads the bundle (every
// X.509 authority must parse, every JWT key must have an ID and a PKIX
// key) and mints a 24-hour X509-SVID from a CSR carrying the webhook
// service's DNS name, which the API server then checks.
func TestWebhookCertificate(t *testing.T) {
	conn := start(t)
	xb, _ := bundles(t, conn)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	const dnsName = "spire-controller-manager-webhook-service.spire-system.svc"
	id := &url.URL{Scheme: "spiffe", Host: "alpha.test", Path: "/spire-controller-manager-webhook"}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{dnsName}, URIs: []*url.URL{id}}, key)
	require.NoError(t, err)

	resp, err := svidv1.NewSVIDClient(conn).MintX509SVID(t.Context(), &svidv1.MintX509SVIDRequest{Csr: der, Ttl: int32((24 * time.Hour).Seconds())})
	require.NoError(t, err)
	require.Equal(t, id.Path, resp.GetSvid().GetId().GetPath())
	var chain []*x509.Certificate
	for _, c := range resp.GetSvid().GetCertChain() {
		cert, err := x509.ParseCertificate(c)
		require.NoError(t, err)
		chain = append(chain, cert)
	}
	require.NotEmpty(t, chain)
	require.Equal(t, []string{dnsName}, chain[0].DNSNames, "the API server checks the webhook's DNS name")
	_, _, err = x509svid.Verify(chain, xb)
	require.NoError(t, err, "the certificate chains to the bundle SCM puts in the webhook configuration")
}
