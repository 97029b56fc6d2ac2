package bundledir_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundledir"
	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
)

// TestRun checks when Run reads the directory: within a second of a
// change, and every Interval without one, so that a file refused for want
// of a bundle held is applied once one is stored (here as bundle set would).
func TestRun(t *testing.T) {
	partner, _ := catest.New(t, alpha)
	_, store := catest.New(t, beta)
	dir := t.TempDir()
	firstDoc, firstSeq := partner.Document()
	_, err := partner.Prepare(t.Context(), datastore.KindJWT)
	require.NoError(t, err)
	second := sign(t, partner)

	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		d := bundledir.New(bundledir.Config{Dir: dir, Local: beta, Store: store})
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		result := func() string {
			synctest.Wait()
			if st := d.Status(); len(st) == 1 {
				return st[0].Result
			}
			return "none"
		}
		require.Equal(t, "none", result(), "an empty directory")

		write(t, dir, "alpha.json", second)
		time.Sleep(time.Second)
		require.Equal(t, bundledir.ResultRefused, result(), "read within a second of the change: no bundle held, no pin")

		_, err := store.PutBootstrapBundle(t.Context(), datastore.Bundle{TrustDomain: alpha, Document: firstDoc, Sequence: firstSeq})
		require.NoError(t, err)
		time.Sleep(time.Second)
		require.Equal(t, bundledir.ResultRefused, result(), "the directory did not change")
		time.Sleep(bundledir.DefaultInterval)
		require.Equal(t, bundledir.ResultApplied, result(), "read again after Interval")

		cancel()
		require.NoError(t, <-done)
	})
}
