package spiregw_test

import (
	"context"
	"crypto"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/spiregw"
	"github.com/treatyhq/treaty/internal/testpki"
)

var spireTD = spiffeid.RequireTrustDomainFromString("spire.test")

// newGateway starts a gateway in front of s over store, polling fast.
func newGateway(t *testing.T, s *spireServer, store spiregw.Store, logs *syncBuffer) *spiregw.Gateway {
	t.Helper()
	g, err := spiregw.New(t.Context(), gatewayConfig(s.socket, store, logs))
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })
	return g
}

func gatewayConfig(socket string, store spiregw.Store, logs *syncBuffer) spiregw.Config {
	cfg := spiregw.Config{SocketPath: socket, TrustDomain: spireTD, Store: store, Poll: 50 * time.Millisecond}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	return cfg
}

// run runs g until the test ends, and checks that Run then returns nil.
func run(t *testing.T, g interface{ Run(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// bundle returns SPIRE's own bundle and its sequence, as SPIRE reports them.
func (s *spireServer) bundle(t *testing.T) (*spiffebundle.Bundle, uint64) {
	t.Helper()
	resp, err := s.bundles.GetBundle(t.Context(), &bundlev1.GetBundleRequest{})
	require.NoError(t, err)
	b, err := bundlewire.FromProto(resp)
	require.NoError(t, err)
	return b, resp.GetSequenceNumber()
}

// sameAuthorities reports whether a and b hold the same X.509 and JWT
// authorities, whatever their sequences.
func sameAuthorities(a, b *spiffebundle.Bundle) bool {
	return x509bundle.FromX509Authorities(a.TrustDomain(), a.X509Authorities()).Equal(
		x509bundle.FromX509Authorities(b.TrustDomain(), b.X509Authorities())) &&
		jwtbundle.FromJWTAuthorities(a.TrustDomain(), a.JWTAuthorities()).Equal(
			jwtbundle.FromJWTAuthorities(b.TrustDomain(), b.JWTAuthorities()))
}

// requireStored checks that store holds exactly what g publishes.
func requireStored(t *testing.T, store *sqlite.Store, g *spiregw.Gateway) {
	t.Helper()
	doc, seq := g.Document()
	stored, err := store.LocalBundle(t.Context())
	require.NoError(t, err)
	require.Equal(t, string(doc), string(stored.Document))
	require.Equal(t, seq, stored.Sequence)
	res, err := bundle.Parse(spireTD, doc, bundle.Options{})
	require.NoError(t, err)
	docSeq, ok := res.Bundle.SequenceNumber()
	require.True(t, ok)
	require.Equal(t, seq, docSeq, "the document carries the sequence published")
}

// TestGatewayFollowsSPIRE publishes SPIRE's bundle, then each authority
// SPIRE prepares, at a rising sequence kept in treaty's store.
func TestGatewayFollowsSPIRE(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	store := openStore(t)
	g := newGateway(t, s, store, nil)
	require.Equal(t, spireTD, g.TrustDomain())

	theirs, theirSeq := s.bundle(t)
	require.True(t, sameAuthorities(theirs, g.Bundle()), "SPIRE's authorities are published")
	_, seq := g.Document()
	require.Equal(t, max(theirSeq, 1), seq, "SPIRE's sequence, higher than none published before")
	requireStored(t, store, g)

	run(t, g)
	for _, prepare := range []struct {
		kind string
		call func(context.Context) error
	}{
		{"x509", func(ctx context.Context) error {
			_, err := s.authorities.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
			return err
		}},
		{"jwt", func(ctx context.Context) error {
			_, err := s.authorities.PrepareJWTAuthority(ctx, &localauthorityv1.PrepareJWTAuthorityRequest{})
			return err
		}},
	} {
		changed := g.Changed()
		_, before := g.Document()
		require.NoError(t, prepare.call(t.Context()), prepare.kind)
		within(t, changed, "the gateway publishes SPIRE's prepared "+prepare.kind+" authority")
		theirs, _ := s.bundle(t)
		require.True(t, sameAuthorities(theirs, g.Bundle()), prepare.kind)
		_, after := g.Document()
		require.Greater(t, after, before, "every change is published at a higher sequence")
		requireStored(t, store, g)
	}
	require.Len(t, g.Bundle().X509Authorities(), 2)
	require.Len(t, g.Bundle().JWTAuthorities(), 2)
	require.NoError(t, g.Err())

	b := g.Bundle()
	b.AddX509Authority(testpki.CACert(t, "spiffe://spire.test"))
	require.Len(t, g.Bundle().X509Authorities(), 2, "Bundle returns a copy")

	journal, err := store.Journal(t.Context(), 100)
	require.NoError(t, err)
	require.Len(t, journal, 3, "one journal event per bundle published: %+v", journal)
	for _, e := range journal {
		require.Equal(t, "published", e.Event)
	}
}

// TestGatewayOwnSequence starts over a store that published a bundle at a
// far higher sequence than SPIRE's: the gateway continues from there, and a
// restart with SPIRE unchanged publishes nothing new.
func TestGatewayOwnSequence(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	store := openStore(t)
	earlier := spiffebundle.New(spireTD)
	earlier.AddX509Authority(testpki.CACert(t, "spiffe://spire.test"))
	earlier.SetSequenceNumber(1000)
	publishLocal(t, store, earlier)

	g := newGateway(t, s, store, nil)
	theirs, theirSeq := s.bundle(t)
	require.Less(t, theirSeq, uint64(1000))
	require.True(t, sameAuthorities(theirs, g.Bundle()))
	doc, seq := g.Document()
	require.Equal(t, uint64(1001), seq, "one more than the last published, not SPIRE's lower one")
	requireStored(t, store, g)
	require.NoError(t, g.Close())

	again := newGateway(t, s, store, nil)
	doc2, seq2 := again.Document()
	require.Equal(t, seq, seq2)
	require.Equal(t, string(doc), string(doc2))
	journal, err := store.Journal(t.Context(), 100)
	require.NoError(t, err)
	require.Len(t, journal, 1, "the restart found nothing new to publish")
}

// TestGatewayWrongSPIRE refuses a SPIRE server of another trust domain, and
// stores nothing.
func TestGatewayWrongSPIRE(t *testing.T) {
	s := startSPIRE(t, "other.test")
	store := openStore(t)
	_, err := spiregw.New(t.Context(), gatewayConfig(s.socket, store, nil))
	require.ErrorContains(t, err, `is trust domain "other.test", not "spire.test"`)
	_, err = store.LocalBundle(t.Context())
	require.ErrorIs(t, err, datastore.ErrNotFound)
}

// TestGatewayRefusesToStart covers what stops New before SPIRE is asked:
// no SPIRE and nothing published, a store of another trust domain, a stored
// bundle that cannot be read. None of these needs a spire-server.
func TestGatewayRefusesToStart(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "spiregw") //nolint:usetesting // unix socket paths must stay short
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	nobody := filepath.Join(sockDir, "api.sock")

	other := spiffebundle.New(spiffeid.RequireTrustDomainFromString("other.test"))
	other.AddX509Authority(testpki.CACert(t, "spiffe://other.test"))
	other.SetSequenceNumber(3)
	for _, tc := range []struct {
		name, want string
		seed       func(*testing.T, *sqlite.Store)
	}{
		{"fail/nothing listening, nothing published", "read the SPIRE server's bundle over " + nobody, func(*testing.T, *sqlite.Store) {}},
		{"fail/store of another trust domain", `the datastore belongs to trust domain "other.test", not "spire.test"`, func(t *testing.T, s *sqlite.Store) { publishLocal(t, s, other) }},
		{"fail/stored bundle damaged", "stored local bundle", func(t *testing.T, s *sqlite.Store) {
			require.NoError(t, s.CommitAuthorities(t.Context(), datastore.AuthorityChange{
				LocalBundle: &datastore.Bundle{TrustDomain: spireTD, Document: []byte(`{"keys":`), Sequence: 4}}))
		}},
		{"fail/datastore unreadable", "load the published bundle", func(t *testing.T, s *sqlite.Store) { require.NoError(t, s.Close()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := openStore(t)
			tc.seed(t, store)
			g, err := spiregw.New(t.Context(), gatewayConfig(nobody, store, nil))
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, g)
		})
	}
}

// TestGatewayWhileSPIREIsAway stops SPIRE under a running gateway: the last
// bundle stays published, Err says why, a gateway starting meanwhile serves
// the stored bundle, and once SPIRE is back its changes are published again.
func TestGatewayWhileSPIREIsAway(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	store := openStore(t)
	logs := &syncBuffer{}
	g := newGateway(t, s, store, logs)
	before, seq := g.Document()
	run(t, g)

	s.stop()
	eventually(t, func() bool { return g.Err() != nil }, "Err reports SPIRE away")
	require.ErrorContains(t, g.Err(), "cannot follow the bundle of the SPIRE server at "+s.socket+" since")
	require.ErrorContains(t, g.Err(), "serving the last bundle published")
	doc, seq2 := g.Document()
	require.Equal(t, string(before), string(doc), "the last bundle stays published")
	require.Equal(t, seq, seq2)

	restarted, err := spiregw.New(t.Context(), gatewayConfig(s.socket, store, logs))
	require.NoError(t, err, "a bundle was published before: start with it")
	doc, seq2 = restarted.Document()
	require.Equal(t, string(before), string(doc))
	require.Equal(t, seq, seq2)
	require.NoError(t, restarted.Close())

	s.start()
	eventually(t, func() bool { return g.Err() == nil }, "Err clears once SPIRE answers")
	changed := g.Changed()
	_, err = s.authorities.PrepareX509Authority(t.Context(), &localauthorityv1.PrepareX509AuthorityRequest{})
	require.NoError(t, err)
	within(t, changed, "a change after SPIRE came back is published")
	_, seq3 := g.Document()
	require.Greater(t, seq3, seq)

	out := logs.String()
	require.Equal(t, 1, strings.Count(out, "cannot follow the SPIRE server's bundle"), "logged once, not at every poll:\n%s", out)
	require.Contains(t, out, "following the SPIRE server's bundle again")
	require.Contains(t, out, "serving the bundle published before until it is")
}

// TestGatewayPublishesOnlyWhatIsStored closes the datastore under a running
// gateway: a change of SPIRE's bundle that cannot be stored is not
// published, so that the sequence served is never one a restart would
// not know.
func TestGatewayPublishesOnlyWhatIsStored(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	store := openStore(t)
	g := newGateway(t, s, store, nil)
	before, seq := g.Document()
	changed := g.Changed()
	run(t, g)

	require.NoError(t, store.Close())
	_, err := s.authorities.PrepareX509Authority(t.Context(), &localauthorityv1.PrepareX509AuthorityRequest{})
	require.NoError(t, err)
	eventually(t, func() bool { return g.Err() != nil }, "Err reports the failure to store")
	require.ErrorContains(t, g.Err(), "store the SPIRE server's bundle")
	doc, seq2 := g.Document()
	require.Equal(t, string(before), string(doc), "nothing unstored is published")
	require.Equal(t, seq, seq2)
	select {
	case <-changed:
		t.Fatal("Changed fired for a bundle that was not stored")
	default:
	}
}

// TestMintX509SVID has SPIRE mint the bundle endpoint's X509-SVID for a key
// made here, with the lifetime asked.
func TestMintX509SVID(t *testing.T) {
	s := startSPIRE(t, "spire.test")
	cfg := gatewayConfig(s.socket, openStore(t), nil)
	cfg.SVIDTTL = 10 * time.Minute
	g, err := spiregw.New(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close() })

	id := spiffeid.RequireFromPath(spireTD, "/treaty/bundle-endpoint")
	svid, err := g.MintX509SVID(id)
	require.NoError(t, err)
	require.Equal(t, id, svid.ID)
	leaf := svid.Certificates[0]
	require.True(t, svid.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey), "the key made here is the SVID's")
	require.WithinDuration(t, time.Now().Add(10*time.Minute), leaf.NotAfter, time.Minute, "the lifetime asked")
	gotID, _, err := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(spireTD, g.Bundle().X509Authorities()))
	require.NoError(t, err, "the SVID verifies with the bundle the gateway publishes")
	require.Equal(t, id, gotID)

	_, err = g.MintX509SVID(spiffeid.RequireFromString("spiffe://other.test/treaty/bundle-endpoint"))
	require.ErrorContains(t, err, "have the SPIRE server mint the endpoint's X509-SVID spiffe://other.test/treaty/bundle-endpoint")

	s.stop()
	_, err = g.MintX509SVID(id)
	require.ErrorContains(t, err, "have the SPIRE server mint")
}

// publishLocal stores b as the local bundle published before.
func publishLocal(t *testing.T, store *sqlite.Store, b *spiffebundle.Bundle) {
	t.Helper()
	doc, err := bundle.Marshal(b)
	require.NoError(t, err)
	seq, _ := b.SequenceNumber()
	require.NoError(t, store.CommitAuthorities(t.Context(), datastore.AuthorityChange{
		LocalBundle: &datastore.Bundle{TrustDomain: b.TrustDomain(), Document: doc, Sequence: seq, UpdatedAt: time.Now()}}))
}
