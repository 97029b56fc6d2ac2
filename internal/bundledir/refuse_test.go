package bundledir_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundledir"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

func TestSyncMissingDirectory(t *testing.T) {
	_, store := catest.New(t, beta)
	d := bundledir.New(bundledir.Config{Dir: filepath.Join(t.TempDir(), "absent"), Local: beta, Store: store})
	require.ErrorContains(t, d.Sync(t.Context()), "read signed bundles directory")
	require.Empty(t, d.Status())
}

// TestUnreadableFiles checks files that never reach verification: one over
// the size limit and one that is a plain bundle, not a signed one. Both are
// reported and nothing is stored; a directory named like a file is skipped.
func TestUnreadableFiles(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	_, store := catest.New(t, beta)
	dir := t.TempDir()
	doc, _ := partner.Document()
	huge := append(sign(t, partner), bytes.Repeat([]byte(" "), signedbundle.MaxFileBytes)...)
	write(t, dir, "huge.json", huge)
	write(t, dir, "plain.json", doc)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.json"), 0o700))
	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	d := bundledir.New(bundledir.Config{Dir: dir, Pins: map[spiffeid.TrustDomain]string{alpha: fp}, Local: beta, Store: store})

	st := statusOf(t, d, "huge.json")
	require.Equal(t, bundledir.ResultUnreadable, st.Result)
	require.Contains(t, st.Reason, "over the limit")
	st = statusOf(t, d, "plain.json")
	require.Equal(t, bundledir.ResultUnreadable, st.Result)
	require.Contains(t, st.Reason, "not a signed bundle")
	require.Len(t, d.Status(), 2, "sub.json is a directory")
	_, err = store.FederatedBundle(t.Context(), alpha)
	require.ErrorIs(t, err, datastore.ErrNotFound, "a pinned partner's unreadable files store nothing")
}

// TestUnknownTrustDomain checks that a file of a trust domain with neither
// a bundle held nor a pin is refused, while a pinned partner's next to it
// is applied.
func TestUnknownTrustDomain(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	stranger, _ := catest.New(t, spiffeid.RequireTrustDomainFromString("gamma.test"))
	_, store := catest.New(t, beta)
	dir := t.TempDir()
	write(t, dir, "alpha.json", sign(t, partner))
	write(t, dir, "gamma.json", sign(t, stranger))
	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	d := bundledir.New(bundledir.Config{Dir: dir, Pins: map[spiffeid.TrustDomain]string{alpha: fp}, Local: beta, Store: store})

	st := statusOf(t, d, "gamma.json")
	require.Equal(t, bundledir.ResultRefused, st.Result)
	require.Equal(t, "gamma.test", st.TrustDomain)
	require.Contains(t, st.Reason, signedbundle.ErrNoAnchor.Error())
	require.Equal(t, bundledir.ResultApplied, d.Status()[0].Result, "alpha.json, read with gamma.json")
	_, err = store.FederatedBundle(t.Context(), stranger.TrustDomain())
	require.ErrorIs(t, err, datastore.ErrNotFound)
}

// TestPinOfAnotherBundle checks that a first file is refused when its
// bundle is not the one pinned, even though it is validly self-signed.
func TestPinOfAnotherBundle(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	impostor, _ := catest.New(t, alpha)
	_, store := catest.New(t, beta)
	dir := t.TempDir()
	write(t, dir, "alpha.json", sign(t, impostor))
	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	d := bundledir.New(bundledir.Config{Dir: dir, Pins: map[spiffeid.TrustDomain]string{alpha: fp}, Local: beta, Store: store})
	st := statusOf(t, d, "alpha.json")
	require.Equal(t, bundledir.ResultRefused, st.Result)
	require.Contains(t, st.Reason, "is not the pinned "+fp)
}

// TestHeldBundleDamaged checks that a file is not applied when the bundle
// held for its trust domain cannot be read: without it nothing can be
// verified, and the damaged bundle must not be replaced blindly.
func TestHeldBundleDamaged(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	_, store := catest.New(t, beta)
	_, err := store.PutBootstrapBundle(t.Context(), datastore.Bundle{TrustDomain: alpha, Document: []byte("{damaged"), Sequence: 1})
	require.NoError(t, err)
	dir := t.TempDir()
	write(t, dir, "alpha.json", sign(t, partner))
	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	d := bundledir.New(bundledir.Config{Dir: dir, Pins: map[spiffeid.TrustDomain]string{alpha: fp}, Local: beta, Store: store})

	st := statusOf(t, d, "alpha.json")
	require.Equal(t, bundledir.ResultFailed, st.Result)
	require.Contains(t, st.Reason, "the bundle held for alpha.test")
	held, err := store.FederatedBundle(t.Context(), alpha)
	require.NoError(t, err)
	require.Equal(t, "{damaged", string(held.Document), "the pin is for a first file only")
}

// TestStoreKeepsHigherSequence checks that a file the held document's keys
// verify is still not applied when the store holds the bundle at a higher
// sequence than the document says (here one stored without
// spiffe_sequence): the store's rule wins and the file is reported failed.
func TestStoreKeepsHigherSequence(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	_, store := catest.New(t, beta)
	unsequenced := partner.Bundle()
	unsequenced.ClearSequenceNumber()
	doc, err := bundle.Marshal(unsequenced)
	require.NoError(t, err)
	_, err = store.PutBootstrapBundle(t.Context(), datastore.Bundle{TrustDomain: alpha, Document: doc, Sequence: 1 << 40})
	require.NoError(t, err)
	dir := t.TempDir()
	write(t, dir, "alpha.json", sign(t, partner))
	n := &notifier{}
	d := bundledir.New(bundledir.Config{Dir: dir, Local: beta, Store: store, Notifier: n})

	st := statusOf(t, d, "alpha.json")
	require.Equal(t, bundledir.ResultFailed, st.Result)
	require.Contains(t, st.Reason, "a bundle at least as new was stored meanwhile")
	held, err := store.FederatedBundle(t.Context(), alpha)
	require.NoError(t, err)
	require.Equal(t, uint64(1<<40), held.Sequence)
	require.Empty(t, n.changed, "nothing stored, nothing announced")
}

// TestLogsOnce checks that a file's outcome is logged when it first happens
// and when it changes, not at every read.
func TestLogsOnce(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	_, store := catest.New(t, beta)
	dir := t.TempDir()
	write(t, dir, "alpha.json", sign(t, partner))
	var logs bytes.Buffer
	pins := map[spiffeid.TrustDomain]string{}
	d := bundledir.New(bundledir.Config{Dir: dir, Pins: pins, Local: beta, Store: store,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	for range 3 {
		require.NoError(t, d.Sync(t.Context()))
	}
	require.Equal(t, 1, strings.Count(logs.String(), "signed bundle refused"), logs.String())
	require.Contains(t, logs.String(), "no bundle held to verify with")

	fp, err := bundle.Fingerprint(partner.Bundle())
	require.NoError(t, err)
	pins[alpha] = fp
	for range 3 {
		require.NoError(t, d.Sync(t.Context()))
	}
	require.Equal(t, 1, strings.Count(logs.String(), "signed bundle applied"), logs.String())
	require.Equal(t, 1, strings.Count(logs.String(), "signed bundle refused"), "no new refusal")
}
