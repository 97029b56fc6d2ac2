package catest

import (
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

func TestNew(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("alpha.test")
	c, store := New(t, td, Lifetimes(time.Hour, time.Minute))
	require.Equal(t, td, c.TrustDomain())
	require.NotNil(t, c.State(datastore.KindX509).Active, "an active X.509 authority")
	hint, ok := c.Bundle().RefreshHint()
	require.True(t, ok)
	require.Equal(t, time.Minute, hint)
	auths, err := store.ListAuthorities(t.Context())
	require.NoError(t, err)
	require.NotEmpty(t, auths, "the CA keeps its authorities in the returned store")
}
