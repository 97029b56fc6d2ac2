package bundledir_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundledir"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
)

var (
	alpha = spiffeid.RequireTrustDomainFromString("alpha.test")
	beta  = spiffeid.RequireTrustDomainFromString("beta.test")
)

type notifier struct {
	mu      sync.Mutex
	changed []spiffeid.TrustDomain
}

func (n *notifier) BundleChanged(_ context.Context, td spiffeid.TrustDomain) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.changed = append(n.changed, td)
	return nil
}

func sign(t *testing.T, c *ca.CA) []byte {
	t.Helper()
	file, err := c.SignBundle()
	require.NoError(t, err)
	return file
}

func write(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
}

// statusOf returns the status of file after a sync.
func statusOf(t *testing.T, d *bundledir.Dir, file string) bundledir.FileStatus {
	t.Helper()
	require.NoError(t, d.Sync(t.Context()))
	for _, st := range d.Status() {
		if st.File == file {
			return st
		}
	}
	t.Fatalf("no status for %s in %+v", file, d.Status())
	return bundledir.FileStatus{}
}

func TestDir(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	local, store := catest.New(t, beta)
	dir := t.TempDir()
	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	n := &notifier{}
	pins := map[spiffeid.TrustDomain]string{}
	d := bundledir.New(bundledir.Config{Dir: dir, Pins: pins, Local: beta, Store: store, Notifier: n})

	first := sign(t, partner)
	write(t, dir, "alpha.json", first)
	write(t, dir, "beta.json", sign(t, local))
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".git"), 0o700))
	write(t, dir, "README.md", []byte("not a bundle"))

	st := statusOf(t, d, "alpha.json")
	require.Equal(t, bundledir.ResultRefused, st.Result)
	require.Contains(t, st.Reason, "no bundle held to verify with")
	require.Equal(t, bundledir.ResultSkipped, statusOf(t, d, "beta.json").Result)
	require.Len(t, d.Status(), 2, "README.md and .git are not signed bundles")

	pins[alpha] = fp
	st = statusOf(t, d, "alpha.json")
	require.Equal(t, bundledir.ResultApplied, st.Result, st.Reason)
	requireHeld(t, store, partner)
	require.Equal(t, []spiffeid.TrustDomain{alpha}, n.changed)
	require.Equal(t, bundledir.ResultUnchanged, statusOf(t, d, "alpha.json").Result)

	// Two changes of the partner's authorities, each published as the
	// new content of the same file.
	_, err = partner.Prepare(t.Context(), datastore.KindJWT)
	require.NoError(t, err)
	second := sign(t, partner)
	write(t, dir, "alpha.json", second)
	require.Equal(t, bundledir.ResultApplied, statusOf(t, d, "alpha.json").Result)
	_, err = partner.Prepare(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	write(t, dir, "alpha.json", sign(t, partner))
	require.Equal(t, bundledir.ResultApplied, statusOf(t, d, "alpha.json").Result)
	requireHeld(t, store, partner)

	for _, tc := range []struct {
		name, want string
		file       []byte
	}{
		{"fail/rolled back", "a replayed or rolled-back file", first},
		{"fail/replayed", "a replayed or rolled-back file", second},
		{"fail/tampered", "not signed by a JWT authority", []byte(strings.Replace(string(sign(t, partner)), `"spiffe_refresh_hint":`, `"spiffe_refresh_hint":1`, 1))},
		{"fail/truncated", "not a signed bundle", sign(t, partner)[:100]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(t, dir, "alpha.json", tc.file)
			st := statusOf(t, d, "alpha.json")
			require.NotEqual(t, bundledir.ResultApplied, st.Result)
			require.Contains(t, st.Reason, tc.want)
			requireHeld(t, store, partner)
		})
	}
}

// TestDirWalksHistory checks that a directory keeping every version of a
// partner's file applies them in sequence order.
func TestDirWalksHistory(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	_, store := catest.New(t, beta)
	dir := t.TempDir()
	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	write(t, dir, "alpha-3.json", sign(t, partner))
	_, err = partner.Prepare(t.Context(), datastore.KindJWT)
	require.NoError(t, err)
	write(t, dir, "alpha-1.json", sign(t, partner)) // names out of order on purpose

	d := bundledir.New(bundledir.Config{Dir: dir, Pins: map[spiffeid.TrustDomain]string{alpha: fp}, Local: beta, Store: store})
	require.NoError(t, d.Sync(t.Context()))
	for _, st := range d.Status() {
		require.Equal(t, bundledir.ResultApplied, st.Result, "%s: %s", st.File, st.Reason)
	}
	requireHeld(t, store, partner)
}

func requireHeld(t *testing.T, store datastore.Store, partner *ca.CA) {
	t.Helper()
	held, err := store.FederatedBundle(t.Context(), alpha)
	require.NoError(t, err)
	doc, seq := partner.Document()
	require.Equal(t, seq, held.Sequence)
	require.JSONEq(t, string(doc), string(held.Document))
}
