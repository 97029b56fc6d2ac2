package ca

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/keystore"
)

// replica opens a CA on the shared database file with the keys sealed in
// it, as each replica of a trust domain does.
func (e *env) replica(seal []byte) *CA {
	e.t.Helper()
	store, err := sqlite.Open(e.t.Context(), filepath.Join(e.dir, "treaty.db"))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = store.Close() })
	keys, err := keystore.OpenSealed(store, seal, nil)
	require.NoError(e.t, err)
	cfg := e.cfg
	cfg.Store, cfg.Keys, cfg.Shared = store, keys, true
	c, err := New(e.t.Context(), cfg)
	require.NoError(e.t, err)
	return c
}

// Two replicas share one authority: the second starts on the first's
// authorities and keys, learns of changes the other made when it reloads,
// and a change decided on stale authorities is refused and decided again,
// so the sequence rises exactly once per change.
func TestReplicasShareOneAuthority(t *testing.T) {
	e := newEnv(t)
	seal := make([]byte, keystore.SealKeySize)
	a := e.replica(seal)
	b := e.replica(seal)
	require.Equal(t, a.State(datastore.KindX509).Active.ID, b.State(datastore.KindX509).Active.ID, "one shared X.509 authority")
	docA, seqA := a.Document()
	docB, seqB := b.Document()
	require.Equal(t, docA, docB)
	require.Equal(t, seqA, seqB)

	// a prepares; b has not heard yet, but an operator's change is decided
	// on the authorities as stored, so b refuses a second one.
	prepared, err := a.Prepare(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	_, err = b.Prepare(t.Context(), datastore.KindX509)
	require.ErrorIs(t, err, ErrFailedPrecondition)
	require.ErrorContains(t, err, prepared.ID+" is already prepared")
	require.Equal(t, prepared.ID, b.State(datastore.KindX509).Prepared.ID)
	require.Equal(t, seq(t, a), seq(t, b))

	// b activates a's prepared authority, signing with the key a made.
	_, _, err = b.Activate(t.Context(), datastore.KindX509, prepared.ID)
	require.NoError(t, err)
	changed := a.Changed()
	require.NoError(t, a.Reload(t.Context()))
	select {
	case <-changed:
	default:
		t.Fatal("a reload that found changes must signal them")
	}
	require.Equal(t, prepared.ID, a.State(datastore.KindX509).Active.ID)

	// Rotation on stale state is decided again: a moves the clock past
	// the point where a new authority is prepared; b, on the same clock,
	// then finds it prepared rather than preparing a second one.
	e.now = e.now.Add(13 * time.Hour)
	before := seq(t, a)
	require.NoError(t, a.Rotate(t.Context()))
	require.NoError(t, b.Rotate(t.Context()))
	require.Equal(t, before+1, seq(t, b), "one new authority, one sequence step")
	require.Equal(t, a.State(datastore.KindX509).Prepared.ID, b.State(datastore.KindX509).Prepared.ID)
	docA, _ = a.Document()
	docB, _ = b.Document()
	require.Equal(t, docA, docB)
}

// A replica with another seal key cannot start on the shared authorities,
// and says why.
func TestReplicaWithAnotherSealKeyRefusesToStart(t *testing.T) {
	e := newEnv(t)
	e.replica(make([]byte, keystore.SealKeySize))
	other := make([]byte, keystore.SealKeySize)
	other[0] = 1
	store, err := sqlite.Open(t.Context(), filepath.Join(e.dir, "treaty.db"))
	require.NoError(t, err)
	defer store.Close()
	keys, err := keystore.OpenSealed(store, other, nil)
	require.NoError(t, err)
	cfg := e.cfg
	cfg.Store, cfg.Keys, cfg.Shared = store, keys, true
	_, err = New(t.Context(), cfg)
	require.ErrorContains(t, err, "every replica must use the same seal key")
}

// Confirm brings a replica up to the newest committed bundle before it
// answers, and answers at once, with an error, while the store is down.
func TestConfirmCatchesUpWithTheStore(t *testing.T) {
	e := newEnv(t)
	seal := make([]byte, keystore.SealKeySize)
	a := e.replica(seal)
	b := e.replica(seal)
	_, err := a.Prepare(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	_, seqA := a.Document()
	_, seqB := b.Document()
	require.Less(t, seqB, seqA, "b has not heard yet")
	require.NoError(t, b.Confirm(t.Context()))
	docA, seqA := a.Document()
	docB, seqB := b.Document()
	require.Equal(t, seqA, seqB)
	require.Equal(t, docA, docB)
	require.NoError(t, b.Confirm(t.Context()), "nothing new: nothing to do")

	require.NoError(t, b.cfg.Store.(*sqlite.Store).Close())
	require.Error(t, b.Confirm(t.Context()))
	require.ErrorIs(t, b.Confirm(t.Context()), errStoreUnavailable, "while backing off it answers without reading the store")
	_, still := b.Document()
	require.Equal(t, seqB, still, "the bundle in memory stays")
}
