package ca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/keystore"
)

var td = spiffeid.RequireTrustDomainFromString("alpha.test")

// env is a CA on a real SQLite store and key directory with a clock the
// test moves.
type env struct {
	t     testing.TB
	dir   string
	now   time.Time
	store *sqlite.Store
	cfg   Config
}

func newEnv(t testing.TB) *env {
	e := &env{t: t, dir: t.TempDir(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e.cfg = Config{TrustDomain: td, CATTL: 24 * time.Hour, RefreshHint: time.Minute, X509SVIDTTL: time.Hour, Now: func() time.Time { return e.now }}
	return e
}

func (e *env) open() *CA {
	e.t.Helper()
	if e.store != nil {
		require.NoError(e.t, e.store.Close())
	}
	store, err := sqlite.Open(e.t.Context(), filepath.Join(e.dir, "treaty.db"))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = store.Close() })
	keys, err := keystore.Open(filepath.Join(e.dir, "keys"))
	require.NoError(e.t, err)
	e.store = store
	cfg := e.cfg
	cfg.Store, cfg.Keys = store, keys
	c, err := New(e.t.Context(), cfg)
	require.NoError(e.t, err)
	return c
}

func seq(t *testing.T, c *CA) uint64 {
	t.Helper()
	n, ok := c.Bundle().SequenceNumber()
	require.True(t, ok)
	return n
}

func TestFirstStartCreatesActiveAuthorities(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	for _, kind := range []datastore.AuthorityKind{datastore.KindX509, datastore.KindJWT} {
		st := c.State(kind)
		require.NotNil(t, st.Active, kind)
		require.Nil(t, st.Prepared, kind)
		require.Nil(t, st.Old, kind)
	}
	b := c.Bundle()
	require.Len(t, b.X509Authorities(), 1)
	require.Len(t, b.JWTAuthorities(), 1)
	require.Equal(t, uint64(1), seq(t, c))
	hint, _ := b.RefreshHint()
	require.Equal(t, time.Minute, hint)

	doc, n := c.Document()
	parsed, err := spiffebundle.Parse(td, doc)
	require.NoError(t, err)
	require.True(t, parsed.Equal(b))
	require.Equal(t, uint64(1), n)

	cert := b.X509Authorities()[0]
	require.True(t, cert.IsCA)
	require.Equal(t, "spiffe://alpha.test", cert.URIs[0].String())
	require.Equal(t, c.State(datastore.KindX509).Active.ID, hexSKID(cert))
}

func hexSKID(cert *x509.Certificate) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(cert.SubjectKeyId))
	for _, b := range cert.SubjectKeyId {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return string(out)
}

func TestTimeDrivenRotation(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	first := c.State(datastore.KindX509).Active
	lastSeq := seq(t, c)
	step := func(d time.Duration) {
		t.Helper()
		e.now = e.now.Add(d)
		require.NoError(t, c.Rotate(t.Context()))
		require.GreaterOrEqual(t, seq(t, c), lastSeq, "sequence went backwards")
		lastSeq = seq(t, c)
	}

	step(11 * time.Hour) // before half life: nothing happens
	require.Nil(t, c.State(datastore.KindX509).Prepared)
	require.Equal(t, uint64(1), lastSeq)

	step(time.Hour + time.Minute) // half life: a successor is prepared and published
	st := c.State(datastore.KindX509)
	require.NotNil(t, st.Prepared)
	require.Equal(t, first.ID, st.Active.ID)
	require.Len(t, c.Bundle().X509Authorities(), 2, "prepared authority is published before use")
	require.Len(t, c.Bundle().JWTAuthorities(), 2)
	require.Equal(t, uint64(2), lastSeq)
	prepared := st.Prepared

	step(8 * time.Hour) // five sixths: activated; the bundle does not change
	st = c.State(datastore.KindX509)
	require.Equal(t, prepared.ID, st.Active.ID)
	require.Equal(t, first.ID, st.Old.ID)
	require.Equal(t, uint64(2), lastSeq)
	require.GreaterOrEqual(t, st.Active.ActivatedAt.Sub(prepared.PreparedAt), MinPublishedHints*e.cfg.RefreshHint)

	step(3*time.Hour + 59*time.Minute) // the first authority expires and leaves the bundle
	st = c.State(datastore.KindX509)
	require.Nil(t, st.Old)
	require.Len(t, c.Bundle().X509Authorities(), 1)
	require.Equal(t, uint64(3), lastSeq)

	// A restart keeps keys, state and sequence.
	doc, _ := c.Document()
	c2 := e.open()
	doc2, n := c2.Document()
	require.Equal(t, string(doc), string(doc2))
	require.Equal(t, lastSeq, n)
	require.Equal(t, c.State(datastore.KindX509), c2.State(datastore.KindX509))
	require.Equal(t, c.State(datastore.KindJWT), c2.State(datastore.KindJWT))
}

func TestActivationWaitsForPublication(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	// Prepared late by hand, the successor is not activated at five sixths
	// until it has been published for three refresh hints.
	e.now = e.now.Add(20 * time.Hour)
	require.NoError(t, c.Rotate(t.Context()))
	prepared := c.State(datastore.KindX509).Prepared
	require.NotNil(t, prepared)
	e.now = e.now.Add(MinPublishedHints*e.cfg.RefreshHint - time.Second)
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Prepared.ID, "activated too early")
	e.now = e.now.Add(time.Second)
	require.NoError(t, c.Rotate(t.Context()))
	require.Equal(t, prepared.ID, c.State(datastore.KindX509).Active.ID)
}

func TestManualLifecycle(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	ctx := t.Context()
	keys, err := keystore.Open(filepath.Join(e.dir, "keys"))
	require.NoError(t, err)

	for _, kind := range []datastore.AuthorityKind{datastore.KindX509, datastore.KindJWT} {
		t.Run(string(kind), func(t *testing.T) {
			before := seq(t, c)
			active := c.State(kind).Active

			_, err := c.Taint(ctx, kind, active.ID)
			require.ErrorIs(t, err, ErrFailedPrecondition, "active authority cannot be tainted")
			_, _, err = c.Activate(ctx, kind, "nope")
			require.ErrorIs(t, err, ErrFailedPrecondition, "nothing prepared")

			prepared, err := c.Prepare(ctx, kind)
			require.NoError(t, err)
			require.Equal(t, before+1, seq(t, c))
			_, err = c.Prepare(ctx, kind)
			require.ErrorIs(t, err, ErrFailedPrecondition)

			_, _, err = c.Activate(ctx, kind, "nope")
			require.ErrorIs(t, err, ErrUnknownAuthority)
			_, warning, err := c.Activate(ctx, kind, prepared.ID)
			require.NoError(t, err)
			require.Contains(t, warning, "published only")
			require.Equal(t, before+1, seq(t, c), "activation does not change the bundle")

			_, err = c.Revoke(ctx, kind, active.ID)
			require.ErrorIs(t, err, ErrFailedPrecondition, "revoke needs taint first")
			tainted, err := c.Taint(ctx, kind, active.ID)
			require.NoError(t, err)
			require.True(t, tainted.Tainted)
			require.True(t, c.IsTainted(kind, active.ID))
			_, err = c.Taint(ctx, kind, active.ID)
			require.ErrorIs(t, err, ErrFailedPrecondition)

			_, err = c.Revoke(ctx, kind, active.ID)
			require.NoError(t, err)
			require.Equal(t, before+2, seq(t, c))
			require.Nil(t, c.State(kind).Old)
			_, err = keys.Load(keyName(kind, active.ID))
			require.ErrorIs(t, err, keystore.ErrNotFound, "revoked key is deleted")
			_, err = c.Revoke(ctx, kind, active.ID)
			require.ErrorIs(t, err, ErrUnknownAuthority)
		})
	}
	require.Len(t, c.Bundle().X509Authorities(), 1)
	require.Len(t, c.Bundle().JWTAuthorities(), 1)

	journal, err := e.store.Journal(ctx, 100)
	require.NoError(t, err)
	events := map[string]int{}
	for _, ev := range journal {
		events[ev.Event]++
	}
	require.Equal(t, 2, events["revoked"])
	require.Equal(t, 2, events["tainted"])
}

func TestStartupChecks(t *testing.T) {
	t.Run("fail/missing active key", func(t *testing.T) {
		e := newEnv(t)
		c := e.open()
		active := c.State(datastore.KindX509).Active
		require.NoError(t, os.Remove(filepath.Join(e.dir, "keys", keyName(datastore.KindX509, active.ID)+".key.pem")))
		keys, err := keystore.Open(filepath.Join(e.dir, "keys"))
		require.NoError(t, err)
		cfg := e.cfg
		cfg.Store, cfg.Keys = e.store, keys
		_, err = New(t.Context(), cfg)
		require.ErrorContains(t, err, "active x509 authority "+active.ID)
		require.ErrorContains(t, err, "restore it from backup")
	})
	t.Run("fail/other trust domain", func(t *testing.T) {
		e := newEnv(t)
		e.open()
		e.cfg.TrustDomain = spiffeid.RequireTrustDomainFromString("other.test")
		keys, err := keystore.Open(filepath.Join(e.dir, "keys"))
		require.NoError(t, err)
		cfg := e.cfg
		cfg.Store, cfg.Keys = e.store, keys
		_, err = New(t.Context(), cfg)
		require.ErrorContains(t, err, `belongs to trust domain "alpha.test"`)
	})
	t.Run("ok/orphan key removed", func(t *testing.T) {
		e := newEnv(t)
		e.open()
		keys, err := keystore.Open(filepath.Join(e.dir, "keys"))
		require.NoError(t, err)
		k, err := ECP256.GenerateKey()
		require.NoError(t, err)
		require.NoError(t, keys.Save("x509-orphan", k))
		e.open()
		_, err = keys.Load("x509-orphan")
		require.ErrorIs(t, err, keystore.ErrNotFound)
	})
	t.Run("ok/refresh hint change bumps sequence", func(t *testing.T) {
		e := newEnv(t)
		require.Equal(t, uint64(1), seq(t, e.open()))
		e.cfg.RefreshHint = 2 * time.Minute
		require.Equal(t, uint64(2), seq(t, e.open()))
		require.Equal(t, uint64(2), seq(t, e.open()))
	})
}

func TestKeyTypes(t *testing.T) {
	for _, kt := range KeyTypes {
		t.Run("ok/"+string(kt), func(t *testing.T) {
			if testing.Short() && kt == RSA4096 {
				t.Skip("slow key generation")
			}
			e := newEnv(t)
			e.cfg.KeyType = kt
			c := e.open()
			require.Len(t, c.Bundle().X509Authorities(), 1)
		})
	}
	_, err := ParseKeyType("ec-p521")
	require.ErrorContains(t, err, "use one of ec-p256, ec-p384, rsa-2048, rsa-4096")
}

func TestAppend(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	other := newEnv(t)
	other.dir = t.TempDir()
	foreign := other.open().Bundle().X509Authorities()[0]
	before := seq(t, c)
	require.NoError(t, c.Append(t.Context(), []*x509.Certificate{foreign}, nil))
	require.NoError(t, c.Append(t.Context(), []*x509.Certificate{foreign}, nil), "appending twice is a no-op")
	require.Len(t, c.Bundle().X509Authorities(), 2)
	require.Equal(t, before+1, seq(t, c))
	c2 := e.open()
	require.Len(t, c2.Bundle().X509Authorities(), 2, "appended authority survives restart")
}
