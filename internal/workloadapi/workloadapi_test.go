package workloadapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/testpki"
)

var (
	td      = spiffeid.RequireTrustDomainFromString("alpha.test")
	beta    = spiffeid.RequireTrustDomainFromString("beta.test")
	gamma   = spiffeid.RequireTrustDomainFromString("gamma.test")
	svcID   = spiffeid.RequireFromPath(td, "/svc/api")
	myUID   = datastore.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}
	waitFor = 10 * time.Second
)

// entryStore is the real SQLite store for bundles plus registration
// entries held in memory.
type entryStore struct {
	*sqlite.Store
	mu      sync.Mutex
	entries []datastore.Entry
}

func (s *entryStore) ListEntries(context.Context) ([]datastore.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]datastore.Entry(nil), s.entries...), nil
}

func (s *entryStore) set(entries ...datastore.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = entries
}

type testEnv struct {
	t      *testing.T
	store  *entryStore
	ca     *ca.CA
	srv    *Server
	socket string
}

func newTestEnv(t *testing.T, entries ...datastore.Entry) *testEnv {
	t.Helper()
	authority, db := catest.New(t, td)
	store := &entryStore{Store: db, entries: entries}

	sockDir, err := os.MkdirTemp("", "treaty-wl") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "public", "workload.sock")
	srv, err := New(t.Context(), Config{SocketPath: socket, TrustDomain: td, CA: authority, Store: store})
	require.NoError(t, err)
	l, err := srv.Listen(t.Context())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return &testEnv{t: t, store: store, ca: authority, srv: srv, socket: socket}
}

func (e *testEnv) client() *workloadapi.Client {
	c, err := workloadapi.New(e.t.Context(), workloadapi.WithAddr("unix://"+e.socket))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (e *testEnv) addFederated(trustDomain spiffeid.TrustDomain) *spiffebundle.Bundle {
	b := spiffebundle.New(trustDomain)
	b.AddX509Authority(testpki.CACert(e.t, trustDomain.IDString()))
	doc, err := bundle.Marshal(b)
	require.NoError(e.t, err)
	require.NoError(e.t, e.store.SetFederatedBundle(e.t.Context(), datastore.Bundle{TrustDomain: trustDomain, Document: doc, Sequence: 1, UpdatedAt: time.Now()}))
	return b
}

func entry(id string, federatesWith ...string) datastore.Entry {
	return datastore.Entry{ID: id, SPIFFEID: spiffeid.RequireFromPath(td, "/svc/"+id), Selectors: []datastore.Selector{myUID}, FederatesWith: federatesWith}
}

func TestFetchX509SVID(t *testing.T) {
	e := newTestEnv(t, datastore.Entry{ID: "api", SPIFFEID: svcID, Selectors: []datastore.Selector{myUID}, FederatesWith: []string{"beta.test"}, DNSNames: []string{"api.alpha.test"}, Hint: "internal"})
	betaBundle := e.addFederated(beta)
	e.addFederated(gamma)
	e.srv.Notify()

	c := e.client()
	var ctx *workloadapi.X509Context
	require.Eventually(t, func() bool {
		var err error
		ctx, err = c.FetchX509Context(t.Context())
		require.NoError(t, err)
		_, ok := ctx.Bundles.Get(beta)
		return ok
	}, waitFor, 10*time.Millisecond)

	require.Len(t, ctx.SVIDs, 1)
	svid := ctx.SVIDs[0]
	require.Equal(t, svcID, svid.ID)
	require.Equal(t, "internal", svid.Hint)
	require.Equal(t, []string{"api.alpha.test"}, svid.Certificates[0].DNSNames)
	local := x509bundle.FromX509Authorities(td, e.ca.Bundle().X509Authorities())
	_, _, err := x509svid.Verify(svid.Certificates, local)
	require.NoError(t, err, "SVID must chain to the local bundle")

	got, ok := ctx.Bundles.Get(beta)
	require.True(t, ok)
	require.True(t, got.Equal(x509bundle.FromX509Authorities(beta, betaBundle.X509Authorities())))
	_, ok = ctx.Bundles.Get(gamma)
	require.False(t, ok, "gamma.test is not in federatesWith")
}

func TestFederatesWithAll(t *testing.T) {
	e := newTestEnv(t, entry("all", datastore.FederateWithAll))
	e.addFederated(beta)
	e.addFederated(gamma)
	e.srv.Notify()
	c := e.client()
	require.Eventually(t, func() bool {
		b, err := c.FetchX509Bundles(t.Context())
		require.NoError(t, err)
		return b.Len() == 3
	}, waitFor, 10*time.Millisecond)
}

func TestAttestationSelectors(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	exe, err = filepath.EvalSymlinks(exe)
	require.NoError(t, err)
	f, err := os.Open(exe)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	sum := hex.EncodeToString(h.Sum(nil))
	gid := datastore.Selector{Type: "unix", Value: "gid:" + strconv.Itoa(os.Getgid())}

	cases := []struct {
		name      string
		selectors []datastore.Selector
		ok        bool
	}{
		{"ok/uid", []datastore.Selector{myUID}, true},
		{"ok/uid and gid", []datastore.Selector{myUID, gid}, true},
		{"ok/path", []datastore.Selector{{Type: "unix", Value: "path:" + exe}}, true},
		{"ok/sha256", []datastore.Selector{{Type: "unix", Value: "sha256:" + sum}}, true},
		{"fail/other uid", []datastore.Selector{{Type: "unix", Value: "uid:4242424"}}, false},
		{"fail/one selector of two missing", []datastore.Selector{myUID, {Type: "unix", Value: "path:/usr/bin/false"}}, false},
		{"fail/other selector type", []datastore.Selector{{Type: "k8s", Value: "ns:default"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, datastore.Entry{ID: "x", SPIFFEID: svcID, Selectors: tc.selectors})
			_, err := e.client().FetchX509SVID(t.Context())
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
		})
	}
}

func TestSecurityHeaderRequired(t *testing.T) {
	e := newTestEnv(t, entry("api"))
	conn, err := grpc.NewClient("unix://"+e.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(t.Context(), &workload.X509SVIDRequest{})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.ErrorContains(t, err, "security header")
}

func TestStreamsFollowChanges(t *testing.T) {
	e := newTestEnv(t, entry("api", "beta.test"))
	c := e.client()
	updates := make(chan *workloadapi.X509Context, 100)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		_ = c.WatchX509Context(ctx, watcher{updates})
	}()
	first := next(t, updates)
	require.Len(t, first.SVIDs, 1)
	_, ok := first.Bundles.Get(beta)
	require.False(t, ok, "no beta bundle yet")

	t.Run("ok/federated bundle arrives", func(t *testing.T) {
		e.addFederated(beta)
		e.srv.Notify()
		u := nextWhere(t, updates, func(u *workloadapi.X509Context) bool { _, ok := u.Bundles.Get(beta); return ok })
		require.Equal(t, first.SVIDs[0].Certificates[0].SerialNumber, u.SVIDs[0].Certificates[0].SerialNumber, "the SVID is reused")
	})
	t.Run("ok/entry added", func(t *testing.T) {
		e.store.set(entry("api", "beta.test"), entry("worker"))
		e.srv.Notify()
		nextWhere(t, updates, func(u *workloadapi.X509Context) bool { return len(u.SVIDs) == 2 })
	})
	t.Run("ok/authority rotated", func(t *testing.T) {
		prepared, err := e.ca.Prepare(t.Context(), datastore.KindX509)
		require.NoError(t, err)
		_, _, err = e.ca.Activate(t.Context(), datastore.KindX509, prepared.ID)
		require.NoError(t, err)
		u := nextWhere(t, updates, func(u *workloadapi.X509Context) bool {
			return hex.EncodeToString(u.SVIDs[0].Certificates[0].AuthorityKeyId) == prepared.ID
		})
		local := x509bundle.FromX509Authorities(td, e.ca.Bundle().X509Authorities())
		for _, s := range u.SVIDs {
			_, _, err := x509svid.Verify(s.Certificates, local)
			require.NoError(t, err)
		}
	})
}

func TestSVIDRenewedAtHalfLife(t *testing.T) {
	ent := entry("short")
	ent.X509SVIDTTL = 4 * time.Second
	e := newTestEnv(t, ent)
	updates := make(chan *workloadapi.X509Context, 100)
	go func() { _ = e.client().WatchX509Context(t.Context(), watcher{updates}) }()
	first := next(t, updates)
	renewed := next(t, updates)
	require.NotEqual(t, first.SVIDs[0].Certificates[0].SerialNumber, renewed.SVIDs[0].Certificates[0].SerialNumber)
	require.True(t, time.Now().Before(first.SVIDs[0].Certificates[0].NotAfter), "renewed before expiry")
}

func TestFederationNeverBlocksIdentity(t *testing.T) {
	e := newTestEnv(t, entry("api", "nowhere.test", "beta.test"))
	e.addFederated(beta)
	e.srv.Notify()
	c := e.client()
	require.Eventually(t, func() bool {
		ctx, err := c.FetchX509Context(t.Context())
		require.NoError(t, err, "a missing bundle must not cost the SVID")
		_, ok := ctx.Bundles.Get(beta)
		return ok && len(ctx.SVIDs) == 1
	}, waitFor, 10*time.Millisecond)
	require.Equal(t, []Gap{{EntryID: "api", SPIFFEID: "spiffe://alpha.test/svc/api", TrustDomain: "nowhere.test"}}, e.srv.Gaps())
}

func TestJWTSVIDs(t *testing.T) {
	e := newTestEnv(t, entry("api"), entry("worker"))
	c := e.client()
	t.Run("ok/fetch and validate", func(t *testing.T) {
		want := spiffeid.RequireFromPath(td, "/svc/worker")
		svid, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: "beta", Subject: want})
		require.NoError(t, err)
		require.Equal(t, want, svid.ID)
		validated, err := c.ValidateJWTSVID(t.Context(), svid.Marshal(), "beta")
		require.NoError(t, err)
		require.Equal(t, want, validated.ID)
		bundles, err := c.FetchJWTBundles(t.Context())
		require.NoError(t, err)
		_, err = jwtsvid.ParseAndValidate(svid.Marshal(), bundles, []string{"beta"})
		require.NoError(t, err)
	})
	t.Run("ok/all identities", func(t *testing.T) {
		svids, err := c.FetchJWTSVIDs(t.Context(), jwtsvid.Params{Audience: "beta"})
		require.NoError(t, err)
		require.Len(t, svids, 2)
	})
	t.Run("fail/wrong audience", func(t *testing.T) {
		svid, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: "beta"})
		require.NoError(t, err)
		_, err = c.ValidateJWTSVID(t.Context(), svid.Marshal(), "gamma")
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	})
	t.Run("fail/not entitled", func(t *testing.T) {
		_, err := c.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: "beta", Subject: spiffeid.RequireFromPath(td, "/svc/other")})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})
}

func TestSocketModes(t *testing.T) {
	e := newTestEnv(t)
	info, err := os.Stat(e.socket)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o777), info.Mode().Perm())
	dir, err := os.Stat(filepath.Dir(e.socket))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), dir.Mode().Perm())
}

type watcher struct{ ch chan *workloadapi.X509Context }

func (w watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.ch <- c }
func (w watcher) OnX509ContextWatchError(error)                  {}

func next(t *testing.T, ch chan *workloadapi.X509Context) *workloadapi.X509Context {
	t.Helper()
	select {
	case u := <-ch:
		return u
	case <-time.After(waitFor):
		t.Fatal("no update from the Workload API")
		return nil
	}
}

func nextWhere(t *testing.T, ch chan *workloadapi.X509Context, ok func(*workloadapi.X509Context) bool) *workloadapi.X509Context {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case u := <-ch:
			if ok(u) {
				return u
			}
		case <-deadline:
			t.Fatal("the expected update never came")
			return nil
		}
	}
}

// TestGoSPIFFESources uses go-spiffe's source types, which keep a stream
// open and follow updates.
func TestGoSPIFFESources(t *testing.T) {
	e := newTestEnv(t, entry("api", "beta.test"))
	e.addFederated(beta)
	e.srv.Notify()
	opt := workloadapi.WithClientOptions(workloadapi.WithAddr("unix://" + e.socket))

	x509Source, err := workloadapi.NewX509Source(t.Context(), opt)
	require.NoError(t, err)
	defer x509Source.Close()
	svid, err := x509Source.GetX509SVID()
	require.NoError(t, err)
	require.Equal(t, "spiffe://alpha.test/svc/api", svid.ID.String())

	bundles, err := workloadapi.NewBundleSource(t.Context(), opt)
	require.NoError(t, err)
	defer bundles.Close()
	require.Eventually(t, func() bool {
		_, err := bundles.GetX509BundleForTrustDomain(beta)
		return err == nil
	}, waitFor, 10*time.Millisecond)
	_, err = bundles.GetJWTBundleForTrustDomain(td)
	require.NoError(t, err)

	jwtSource, err := workloadapi.NewJWTSource(t.Context(), opt)
	require.NoError(t, err)
	defer jwtSource.Close()
	token, err := jwtSource.FetchJWTSVID(t.Context(), jwtsvid.Params{Audience: "beta"})
	require.NoError(t, err)
	_, err = jwtsvid.ParseAndValidate(token.Marshal(), jwtSource, []string{"beta"})
	require.NoError(t, err)
}

// TestStats: an open stream counts while it is open, and an SVID shared
// by every stream of its entry is issued once.
func TestStats(t *testing.T) {
	e := newTestEnv(t, entry("api"))
	require.Equal(t, Stats{}, e.srv.Stats())
	source, err := workloadapi.NewX509Source(t.Context(), workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+e.socket)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return e.srv.Stats().Streams == 1 }, waitFor, 10*time.Millisecond)
	require.Equal(t, uint64(1), e.srv.Stats().X509SVIDsIssued)
	_, err = e.client().FetchX509SVID(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(1), e.srv.Stats().X509SVIDsIssued, "the cached SVID is shared")
	require.NoError(t, source.Close())
	require.Eventually(t, func() bool { return e.srv.Stats().Streams == 0 }, waitFor, 10*time.Millisecond)
}
