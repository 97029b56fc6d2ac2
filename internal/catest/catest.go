// Package catest is a test fixture: a real CA over a real SQLite store and
// key store in a temporary directory, opened as the server opens them, so
// that tests exercise the real signing, rotation and bundle encoding
// instead of a fake. Package ca's own tests cannot use it (ca_test.go keeps
// its own environment, which reopens the CA over the same files).
package catest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/keystore"
)

// New opens a store and a key store in t.TempDir() and a CA for td over
// them, after applying opts to its configuration; the store is closed when
// the test ends. It returns the CA and its store, which other parts under
// test may share, as they do in the server.
func New(t testing.TB, td spiffeid.TrustDomain, opts ...func(*ca.Config)) (*ca.CA, *sqlite.Store) {
	t.Helper()
	dir := t.TempDir()
	store, err := sqlite.Open(t.Context(), filepath.Join(dir, "treaty.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	keys, err := keystore.Open(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatalf("open key store: %v", err)
	}
	cfg := ca.Config{TrustDomain: td, Store: store, Keys: keys}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := ca.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("open CA for %s: %v", td.Name(), err)
	}
	return c, store
}

// Lifetimes sets the authorities' lifetime (ca.Config.CATTL) and the
// bundle's refresh hint.
func Lifetimes(caTTL, refreshHint time.Duration) func(*ca.Config) {
	return func(c *ca.Config) { c.CATTL, c.RefreshHint = caTTL, refreshHint }
}
