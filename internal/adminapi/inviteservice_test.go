package adminapi

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundleendpoint"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/invite"
	"github.com/treatyhq/treaty/internal/profile"
)

var (
	beta           = spiffeid.RequireTrustDomainFromString("beta.test")
	betaEndpointID = spiffeid.RequireFromString("spiffe://beta.test/spire/server")
)

// startInvites runs alpha.test's admin API with the invite service,
// advertising endpointURL (empty: none).
func startInvites(t *testing.T, endpointURL string) (*grpc.ClientConn, *sqlite.Store, *ca.CA) {
	t.Helper()
	var own *ca.CA
	conn, store := startWith(t, func(cfg *Config) {
		own = cfg.Bundle.(*ca.CA)
		fetcher := federation.NewFetcher(federation.FetcherConfig{})
		t.Cleanup(fetcher.Close)
		cfg.Invites = &Invites{EndpointURL: endpointURL, Profile: string(profile.HTTPSSPIFFE),
			EndpointSPIFFEID: "spiffe://alpha.test/spire/server", Fetcher: fetcher, Store: cfg.Store.(InviteStore)}
	})
	return conn, store, own
}

// betaEndpoint runs beta.test's https_spiffe bundle endpoint and returns
// its CA and URL.
func betaEndpoint(t *testing.T) (*ca.CA, string) {
	t.Helper()
	c, _ := catest.New(t, beta)
	s, err := bundleendpoint.New(bundleendpoint.Config{Address: "127.0.0.1:0", Profile: profile.HTTPSSPIFFE,
		EndpointSPIFFEID: betaEndpointID, SVIDSource: c, Source: c})
	require.NoError(t, err)
	l, err := s.Listen(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return c, "https://" + l.Addr().String()
}

// betaInvite is an invite of beta.test to url, pinned to c's bundle,
// as beta's server would make it.
func betaInvite(t *testing.T, c *ca.CA, url string, edit func(*invite.Token)) string {
	t.Helper()
	fp, err := bundle.Fingerprint(c.Bundle())
	require.NoError(t, err)
	nonce, err := invite.NewNonce()
	require.NoError(t, err)
	tok := invite.Token{TrustDomain: "beta.test", URLs: []string{url}, Profile: string(profile.HTTPSSPIFFE),
		EndpointSPIFFEID: betaEndpointID.String(), Fingerprint: fp, Expires: time.Now().Add(time.Hour).Unix(), Nonce: nonce}
	if edit != nil {
		edit(&tok)
	}
	enc, err := invite.Encode(tok)
	require.NoError(t, err)
	return enc
}

// call invokes a Struct method with req and decodes the answer into resp.
func call(t *testing.T, conn *grpc.ClientConn, method string, req, resp any) error {
	t.Helper()
	in, err := adminwire.ToStruct(req)
	require.NoError(t, err)
	out := new(structpb.Struct)
	if err := conn.Invoke(t.Context(), method, in, out); err != nil {
		return err
	}
	require.NoError(t, adminwire.FromStruct(out, resp))
	return nil
}

func requireStatus(t *testing.T, err error, code codes.Code, phrase string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), "error: %v", err)
	require.Contains(t, st.Message(), phrase)
}

func TestInvite(t *testing.T) {
	conn, _, own := startInvites(t, "https://alpha.example:8443")
	fp, err := bundle.Fingerprint(own.Bundle())
	require.NoError(t, err)
	cases := []struct {
		name  string
		req   adminwire.InviteRequest
		url   string
		ttl   time.Duration
		embed bool
	}{
		{name: "ok/defaults", url: "https://alpha.example:8443", ttl: adminwire.DefaultInviteTTL},
		{name: "ok/url, ttl and embedded bundle", req: adminwire.InviteRequest{URL: "https://bundle.alpha.example", TTLSeconds: 60, EmbedBundle: true},
			url: "https://bundle.alpha.example", ttl: time.Minute, embed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now().Truncate(time.Second)
			var resp adminwire.InviteResponse
			require.NoError(t, call(t, conn, adminwire.InviteMethod, tc.req, &resp))
			tok, err := invite.Decode(resp.Token, time.Now())
			require.NoError(t, err)
			require.Equal(t, "alpha.test", tok.TrustDomain)
			require.Equal(t, []string{tc.url}, tok.URLs)
			require.Equal(t, "https_spiffe", tok.Profile)
			require.Equal(t, "spiffe://alpha.test/spire/server", tok.EndpointSPIFFEID)
			require.Equal(t, fp, tok.Fingerprint)
			require.Equal(t, fp, resp.Fingerprint)
			require.Len(t, tok.Nonce, 32)
			exp := time.Unix(tok.Expires, 0)
			require.WithinRange(t, exp, before.Add(tc.ttl), time.Now().Add(tc.ttl))
			require.Equal(t, exp.UTC().Format(time.RFC3339), resp.Expires)
			if !tc.embed {
				require.Empty(t, tok.Bundle)
				return
			}
			res, err := bundle.Parse(td, tok.Bundle, bundle.Options{})
			require.NoError(t, err)
			require.True(t, res.Bundle.Equal(own.Bundle()))
		})
	}
	t.Run("ok/every invite has its own nonce", func(t *testing.T) {
		nonces := map[string]bool{}
		for range 3 {
			var resp adminwire.InviteResponse
			require.NoError(t, call(t, conn, adminwire.InviteMethod, adminwire.InviteRequest{}, &resp))
			tok, err := invite.Decode(resp.Token, time.Now())
			require.NoError(t, err)
			require.False(t, nonces[tok.Nonce])
			nonces[tok.Nonce] = true
		}
	})
}

func TestInviteRefuses(t *testing.T) {
	conn, _, _ := startInvites(t, "")
	for _, tc := range []struct {
		name   string
		req    any
		code   codes.Code
		phrase string
	}{
		{name: "fail/no endpoint to invite to", req: adminwire.InviteRequest{}, code: codes.FailedPrecondition, phrase: "no bundle endpoint to invite partners to"},
		{name: "fail/plain http", req: adminwire.InviteRequest{URL: "http://alpha.example"}, code: codes.InvalidArgument, phrase: "https://"},
		{name: "fail/userinfo", req: adminwire.InviteRequest{URL: "https://admin:s3cr3t@alpha.example"}, code: codes.InvalidArgument, phrase: "xxxxx"},
		{name: "fail/not a URL", req: adminwire.InviteRequest{URL: "https://alpha.example/\x7f"}, code: codes.InvalidArgument, phrase: "is not a URL"},
		{name: "fail/malformed request", req: map[string]any{"url": 7}, code: codes.InvalidArgument, phrase: "InviteRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := call(t, conn, adminwire.InviteMethod, tc.req, &adminwire.InviteResponse{})
			requireStatus(t, err, tc.code, tc.phrase)
			require.NotContains(t, err.Error(), "s3cr3t")
		})
	}
}

func TestJoin(t *testing.T) {
	partner, url := betaEndpoint(t)
	conn, store, _ := startInvites(t, "https://alpha.example:8443")
	tok := betaInvite(t, partner, url, func(t *invite.Token) { t.Reverse = true })

	var resp adminwire.JoinResponse
	require.NoError(t, call(t, conn, adminwire.JoinMethod, adminwire.JoinRequest{Token: tok}, &resp))
	require.Equal(t, "beta.test", resp.TrustDomain)
	require.Equal(t, "https_spiffe", resp.Profile)
	require.Equal(t, url, resp.URL)
	seq, _ := partner.Bundle().SequenceNumber()
	require.Equal(t, seq, resp.Sequence)

	rel, err := store.Relationship(t.Context(), beta)
	require.NoError(t, err)
	require.Equal(t, betaEndpointID.String(), rel.EndpointSPIFFEID)
	held, err := store.FederatedBundle(t.Context(), beta)
	require.NoError(t, err)
	res, err := bundle.Parse(beta, held.Document, bundle.Options{})
	require.NoError(t, err)
	require.True(t, res.Bundle.Equal(partner.Bundle()), "the bundle stored is the one the invite pinned")

	reverse, err := invite.Decode(resp.ReverseToken, time.Now())
	require.NoError(t, err, "the invite asked for a reverse invite")
	require.Equal(t, "alpha.test", reverse.TrustDomain)
	require.Equal(t, []string{"https://alpha.example:8443"}, reverse.URLs)

	t.Run("fail/replayed", func(t *testing.T) {
		err := call(t, conn, adminwire.JoinMethod, adminwire.JoinRequest{Token: tok}, &adminwire.JoinResponse{})
		requireStatus(t, err, codes.AlreadyExists, "already used")
	})
	t.Run("fail/replayed after the relationship was deleted", func(t *testing.T) {
		require.NoError(t, store.DeleteRelationship(t.Context(), beta))
		err := call(t, conn, adminwire.JoinMethod, adminwire.JoinRequest{Token: tok}, &adminwire.JoinResponse{})
		requireStatus(t, err, codes.AlreadyExists, "already used")
		_, err = store.Relationship(t.Context(), beta)
		require.ErrorIs(t, err, datastore.ErrNotFound, "a replayed invite creates nothing")
	})
	t.Run("fail/second invite while the relationship exists", func(t *testing.T) {
		fresh := betaInvite(t, partner, url, nil)
		require.NoError(t, call(t, conn, adminwire.JoinMethod, adminwire.JoinRequest{Token: fresh}, &adminwire.JoinResponse{}))
		err := call(t, conn, adminwire.JoinMethod, adminwire.JoinRequest{Token: betaInvite(t, partner, url, nil)}, &adminwire.JoinResponse{})
		requireStatus(t, err, codes.AlreadyExists, "a federation relationship with beta.test exists already")
	})
}

func TestJoinRefuses(t *testing.T) {
	partner, url := betaEndpoint(t)
	impostor, _ := catest.New(t, beta)
	conn, store, own := startInvites(t, "")
	ownFP, err := bundle.Fingerprint(own.Bundle())
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		token  string
		code   codes.Code
		phrase string
	}{
		{name: "fail/not an invite", token: `{"keys":[]}`, code: codes.InvalidArgument, phrase: "not a treaty invite"},
		{name: "fail/truncated", token: betaInvite(t, partner, url, nil)[:40], code: codes.InvalidArgument, phrase: "damaged"},
		{name: "fail/expired", token: betaInvite(t, partner, url, func(t *invite.Token) { t.Expires = time.Now().Unix() }),
			code: codes.InvalidArgument, phrase: "expired"},
		{name: "fail/our own trust domain", token: betaInvite(t, partner, url, func(t *invite.Token) {
			t.TrustDomain, t.EndpointSPIFFEID, t.Fingerprint = "alpha.test", "spiffe://alpha.test/spire/server", ownFP
		}), code: codes.InvalidArgument, phrase: "for our own trust domain"},
		{name: "fail/pinned to another bundle", token: betaInvite(t, impostor, url, nil), code: codes.FailedPrecondition, phrase: "not the one the invite was made for"},
		{name: "fail/endpoint down", token: betaInvite(t, partner, "https://127.0.0.1:1", nil), code: codes.FailedPrecondition, phrase: "read beta.test's bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := call(t, conn, adminwire.JoinMethod, adminwire.JoinRequest{Token: tc.token}, &adminwire.JoinResponse{})
			requireStatus(t, err, tc.code, tc.phrase)
			_, err = store.Relationship(t.Context(), beta)
			require.ErrorIs(t, err, datastore.ErrNotFound, "a refused invite creates nothing")
		})
	}
	t.Run("fail/reverse invite without an endpoint of ours", func(t *testing.T) {
		err := call(t, conn, adminwire.JoinMethod, adminwire.JoinRequest{Token: betaInvite(t, partner, url, nil), Reverse: true}, &adminwire.JoinResponse{})
		requireStatus(t, err, codes.FailedPrecondition, "joined beta.test, but cannot make the reverse invite")
		_, err = store.Relationship(t.Context(), beta)
		require.NoError(t, err, "the join itself stands")
	})
	t.Run("fail/malformed request", func(t *testing.T) {
		err := call(t, conn, adminwire.JoinMethod, map[string]any{"token": true}, &adminwire.JoinResponse{})
		requireStatus(t, err, codes.InvalidArgument, "JoinRequest")
	})
}
