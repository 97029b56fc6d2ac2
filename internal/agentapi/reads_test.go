package agentapi

import (
	"context"
	"sync"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
)

// gatedStore answers reads once gate is closed, counting how many are in
// flight at most.
type gatedStore struct {
	Store
	gate           chan struct{}
	arrived        chan struct{}
	mu             sync.Mutex
	inFlight, most int
}

func (g *gatedStore) read() {
	g.mu.Lock()
	g.inFlight++
	g.most = max(g.most, g.inFlight)
	g.mu.Unlock()
	g.arrived <- struct{}{}
	<-g.gate
	g.mu.Lock()
	g.inFlight--
	g.mu.Unlock()
}

func (g *gatedStore) AttestedNode(context.Context, spiffeid.ID) (datastore.AttestedNode, error) {
	g.read()
	return datastore.AttestedNode{}, nil
}

func (g *gatedStore) FederatedBundle(context.Context, spiffeid.TrustDomain) (datastore.Bundle, error) {
	g.read()
	return datastore.Bundle{}, nil
}

func TestBoundedReads(t *testing.T) {
	const slots, calls = 2, 8
	store := &gatedStore{gate: make(chan struct{}), arrived: make(chan struct{}, calls)}
	b := newBoundedReads(store, slots)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			if i%2 == 0 {
				_, _ = b.AttestedNode(t.Context(), spiffeid.RequireFromString("spiffe://alpha.test/node"))
				return
			}
			_, _ = b.FederatedBundle(t.Context(), spiffeid.RequireTrustDomainFromString("beta.test"))
		})
	}
	for range slots {
		<-store.arrived // the first reads hold every slot
	}
	close(store.gate)
	wg.Wait()
	require.Equal(t, slots, store.most)

	t.Run("fail/context ends while waiting", func(t *testing.T) {
		held := newBoundedReads(&gatedStore{gate: make(chan struct{}), arrived: make(chan struct{}, 1)}, 1)
		held.slots <- struct{}{} // the only slot is taken
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := held.AttestedNode(ctx, spiffeid.RequireFromString("spiffe://alpha.test/node"))
		require.ErrorIs(t, err, context.Canceled)
	})
}
