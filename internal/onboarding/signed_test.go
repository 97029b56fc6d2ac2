package onboarding

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
)

// TestSignedTrustDomainBundle reconciles a file whose trustDomainBundle is
// a signed bundle: stored only with its pin at first, then only when a key
// of the bundle held signed it and it is not older.
func TestSignedTrustDomainBundle(t *testing.T) {
	ctx := t.Context()
	beta := spiffeid.RequireTrustDomainFromString("beta.test")
	partner, _ := catest.New(t, beta)
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "treaty.db"))
	require.NoError(t, err)
	defer store.Close()
	dir := t.TempDir()
	r := NewReconciler(ReconcilerConfig{Dir: dir, Local: spiffeid.RequireTrustDomainFromString("alpha.test"), Store: store, Reloader: &countingReloader{}})
	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	write := func(signed []byte, pin string) {
		t.Helper()
		content := spec("beta.test", "https://beta.example") + "trustDomainBundle: |\n  " + strings.ReplaceAll(strings.TrimSpace(string(signed)), "\n", "\n  ") + "\n"
		if pin != "" {
			content += "trustDomainBundleSHA256: " + pin + "\n"
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, "beta.yaml"), []byte(content), 0o600))
		require.NoError(t, r.Reconcile(ctx))
	}
	held := func() uint64 {
		t.Helper()
		b, err := store.FederatedBundle(ctx, beta)
		if errors.Is(err, datastore.ErrNotFound) {
			return 0
		}
		require.NoError(t, err)
		return b.Sequence
	}
	sign := func() ([]byte, uint64) {
		t.Helper()
		file, err := partner.SignBundle()
		require.NoError(t, err)
		_, seq := partner.Document()
		return file, seq
	}

	first, seq1 := sign()
	write(first, "")
	require.Zero(t, held(), "no pin, no bundle held: not stored")
	rels, err := store.ListRelationships(ctx)
	require.NoError(t, err)
	require.Len(t, rels, 1, "the relationship is applied without it")
	write(first, "sha256:"+fp)
	require.Equal(t, seq1, held())

	_, err = partner.Prepare(ctx, datastore.KindJWT)
	require.NoError(t, err)
	second, seq2 := sign()
	write(second, "sha256:"+fp) // the pin no longer matters
	require.Equal(t, seq2, held())

	write(first, "")
	require.Equal(t, seq2, held(), "rolled back: refused")
	write([]byte(strings.Replace(string(second), `"spiffe_refresh_hint":`, `"spiffe_refresh_hint":1`, 1)), "")
	require.Equal(t, seq2, held(), "tampered: refused")

	f, ps := Parse([]byte(spec("gamma.test", "https://gamma.example")+"trustDomainBundle: '"+strings.TrimSpace(string(second))+"'\n"), "x.yaml")
	require.Nil(t, f)
	require.Len(t, ps, 1)
	require.Contains(t, ps[0].Message, "trustDomainBundle is signed for beta.test, not gamma.test")
}
