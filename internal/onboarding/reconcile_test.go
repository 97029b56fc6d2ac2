package onboarding

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
)

type countingReloader struct{ n int }

func (c *countingReloader) Reload(context.Context) error { c.n++; return nil }

func spec(td, url string) string {
	return fmt.Sprintf("trustDomain: %s\nbundleEndpointURL: %s\nbundleEndpointProfile:\n  type: https_web\n", td, url)
}

func TestReconcile(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "treaty.db"))
	require.NoError(t, err)
	defer store.Close()
	reloader := &countingReloader{}
	r := NewReconciler(ReconcilerConfig{Dir: dir, Local: spiffeid.RequireTrustDomainFromString("alpha.test"), Store: store, Reloader: reloader})
	write := func(name, content string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	relationships := func() map[string]datastore.Relationship {
		list, err := store.ListRelationships(ctx)
		require.NoError(t, err)
		out := map[string]datastore.Relationship{}
		for _, rec := range list {
			out[rec.TrustDomain.Name()] = rec
		}
		return out
	}

	// An API-created relationship that a file also names stays as it is.
	_, err = store.CreateRelationship(ctx, datastore.Relationship{TrustDomain: spiffeid.RequireTrustDomainFromString("gamma.test"),
		EndpointURLs: []string{"https://api.example"}, Profile: "https_web"}, nil)
	require.NoError(t, err)

	write("alpha.yaml", spec("alpha.test", "https://alpha.example")) // our own file: skipped
	write("beta.yaml", spec("beta.test", "https://beta.example"))
	write("gamma.yaml", spec("gamma.test", "https://file.example"))
	require.NoError(t, r.Reconcile(ctx))
	got := relationships()
	require.Len(t, got, 2)
	require.Equal(t, "onboarding:beta.yaml", got["beta.test"].ManagedBy)
	require.Equal(t, []string{"https://api.example"}, got["gamma.test"].EndpointURLs)
	require.Equal(t, 1, reloader.n)

	// Nothing changed: nothing written, no reload.
	require.NoError(t, r.Reconcile(ctx))
	require.Equal(t, 1, reloader.n)

	// A changed file updates its relationship.
	write("beta.yaml", spec("beta.test", "https://beta2.example"))
	require.NoError(t, r.Reconcile(ctx))
	require.Equal(t, []string{"https://beta2.example"}, relationships()["beta.test"].EndpointURLs)

	// A file that stops parsing never deletes its relationship.
	write("beta.yaml", "trustDomain: [broken\n")
	require.NoError(t, r.Reconcile(ctx))
	require.Contains(t, relationships(), "beta.test")

	// A removed file does.
	require.NoError(t, os.Remove(filepath.Join(dir, "beta.yaml")))
	require.NoError(t, r.Reconcile(ctx))
	require.NotContains(t, relationships(), "beta.test")
	require.Contains(t, relationships(), "gamma.test", "API-created relationships are never deleted")
}

func TestReconcilerRunNoticesChanges(t *testing.T) {
	dir := t.TempDir()
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "treaty.db"))
	require.NoError(t, err)
	defer store.Close()
	r := NewReconciler(ReconcilerConfig{Dir: dir, Store: store, Reloader: &countingReloader{}, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "beta.yaml"), []byte(spec("beta.test", "https://beta.example")), 0o600))
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := store.ListRelationships(t.Context())
		require.NoError(t, err)
		if len(list) == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "Run did not apply the new file")
		time.Sleep(10 * time.Millisecond) // Run checks the directory on its own timer
	}
	cancel()
	require.NoError(t, <-done)
}
