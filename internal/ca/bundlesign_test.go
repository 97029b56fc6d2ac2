package ca_test

import (
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/catest"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

// TestSignBundle checks which JWT authorities sign the bundle: every one
// published whose key the CA holds, but never a tainted one.
func TestSignBundle(t *testing.T) {
	ctx := t.Context()
	c, _ := catest.New(t, spiffeid.RequireTrustDomainFromString("alpha.test"))
	signers := func() []string {
		t.Helper()
		file, err := c.SignBundle()
		require.NoError(t, err)
		s, err := signedbundle.Parse(file)
		require.NoError(t, err)
		doc, seq := c.Document()
		require.Equal(t, doc, s.Document, "the bytes the endpoint serves")
		require.Equal(t, seq, s.Sequence)
		return s.KeyIDs
	}
	first := c.Authorities(datastore.KindJWT)[0].ID
	require.Equal(t, []string{first}, signers())

	next, err := c.Prepare(ctx, datastore.KindJWT)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{first, next.ID}, signers(), "the prepared key signs too")

	_, _, err = c.Activate(ctx, datastore.KindJWT, next.ID)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{first, next.ID}, signers(), "the old key still signs")
	_, err = c.Taint(ctx, datastore.KindJWT, first)
	require.NoError(t, err)
	require.Equal(t, []string{next.ID}, signers(), "a tainted key never signs")
}
