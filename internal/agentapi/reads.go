package agentapi

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// boundedReads is a Store whose reads, the ones every agent call makes
// (the caller's node record, a federated bundle), run at most n at a time;
// the others wait for a slot, or until their context ends. Each read in
// flight holds a database connection, and database/sql opens one for every
// read that finds none idle: unbounded, 1,000 agents falling behind had
// thousands of SQLite connections open (7,000 file descriptors, 700 MiB),
// each with its own page cache and schema. A call waiting for a slot holds
// a parked goroutine. The server bounds reads at GOMAXPROCS: SQLite reads
// run in-process on the CPU, so more at once go no faster. Writes
// (attestation, renewal) are not bounded.
type boundedReads struct {
	Store
	slots chan struct{}
}

func newBoundedReads(s Store, n int) *boundedReads {
	return &boundedReads{Store: s, slots: make(chan struct{}, max(n, 1))}
}

// AttestedNode reads the node record within a slot.
func (b *boundedReads) AttestedNode(ctx context.Context, id spiffeid.ID) (datastore.AttestedNode, error) {
	if err := b.acquire(ctx); err != nil {
		return datastore.AttestedNode{}, err
	}
	defer b.release()
	return b.Store.AttestedNode(ctx, id)
}

// FederatedBundle reads the bundle within a slot.
func (b *boundedReads) FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error) {
	if err := b.acquire(ctx); err != nil {
		return datastore.Bundle{}, err
	}
	defer b.release()
	return b.Store.FederatedBundle(ctx, td)
}

func (b *boundedReads) acquire(ctx context.Context) error {
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *boundedReads) release() { <-b.slots }
