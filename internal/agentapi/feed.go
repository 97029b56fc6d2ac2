package agentapi

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// settleDelay coalesces bursts of changes (a batch of entries, many partner
// bundles at once) into one rebuild of the index.
const settleDelay = 50 * time.Millisecond

// EntryStore lists what the entry index is built from. The sqlite store is
// one; implementations are safe for concurrent use.
type EntryStore interface {
	ListEntries(ctx context.Context) ([]datastore.Entry, error)
	// ListFederatedBundles lists the federated bundles after the trust
	// domain name after, at most limit of them (zero or less: all).
	ListFederatedBundles(ctx context.Context, after string, limit int) ([]datastore.Bundle, error)
}

// EntriesChanged tells the server that registration entries may have
// changed (the admin API's Changed hook); the index is rebuilt shortly
// after, without blocking the caller. The context is not used: the rebuild
// happens on the server's own.
func (s *Server) EntriesChanged(context.Context) {
	select {
	case s.changed <- struct{}{}:
	default: // a rebuild is already pending
	}
}

// rebuild reloads the entries and the federated trust domains from the
// store and swaps in a new index snapshot. On failure the previous one
// keeps being served.
func (s *Server) rebuild(ctx context.Context) error {
	entries, err := s.cfg.Entries.ListEntries(ctx)
	if err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	bundles, err := s.cfg.Entries.ListFederatedBundles(ctx, "", 0)
	if err != nil {
		return fmt.Errorf("list federated bundles: %w", err)
	}
	s.index.Rebuild(expandFederatesWith(entries, federatedTrustDomains(bundles, s.cfg.TrustDomain)))
	return nil
}

// federatedTrustDomains returns the names of the trust domains bundles
// belong to, sorted, without our own.
func federatedTrustDomains(bundles []datastore.Bundle, local spiffeid.TrustDomain) []string {
	out := make([]string, 0, len(bundles))
	for _, b := range bundles {
		if b.TrustDomain != local {
			out = append(out, b.TrustDomain.Name())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// expandFederatesWith replaces treaty's "*" in each entry's federates_with
// by the trust domains we hold bundles for (merged with those the entry
// names, sorted): spire-agent v1.15.3 drops a whole entry that names
// anything but a trust domain, and asks for the bundle of each one named.
// The revision agents see changes with the expansion (revisionFor), since
// an agent syncing in pages downloads again only entries whose revision
// changed. Entries without "*" are returned as they are.
func expandFederatesWith(entries []datastore.Entry, federated []string) []datastore.Entry {
	for i, e := range entries {
		if !slices.Contains(e.FederatesWith, datastore.FederateWithAll) {
			continue
		}
		names := slices.Concat(federatesWith(e.FederatesWith), federated)
		slices.Sort(names)
		names = slices.Compact(names)
		entries[i].FederatesWith = names
		entries[i].RevisionNumber = revisionFor(e.RevisionNumber, names)
	}
	return entries
}

// revisionFor returns the revision agents see for an entry federating with
// "*", expanded to names: the stored revision in the low 32 bits, a hash of
// names in bits 32 to 62, so it stays positive (a negative revision makes
// spire-agent drop the entry), changes when the entry is updated or the
// expansion changes (the agent only compares revisions for equality), and
// is the same after a restart, so agents do not fetch anything again then.
func revisionFor(revision int64, names []string) int64 {
	h := fnv.New32a()
	for _, n := range names {
		_, _ = h.Write([]byte(n)) // hash.Hash writes never fail
		_, _ = h.Write([]byte{0})
	}
	return int64(h.Sum32()>>1)<<32 | revision&math.MaxUint32
}

// feed rebuilds the index whenever entries or federated bundles change,
// settleDelay after the first change of a burst (a steady stream of changes
// still gets a rebuild every settleDelay), until ctx is done, with one
// reusable timer. bundlesChanged is the BundlesChanged channel taken before
// the index was last filled, so that no change in between goes unnoticed.
func (s *Server) feed(ctx context.Context, bundlesChanged <-chan struct{}) {
	settle := time.NewTimer(settleDelay)
	settle.Stop()
	defer settle.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-bundlesChanged:
			bundlesChanged = s.cfg.BundlesChanged()
		case <-s.changed:
		case <-settle.C:
			pending = false
			s.rebuildOrLog(ctx)
			continue
		}
		if !pending {
			pending = true
			settle.Reset(settleDelay)
		}
	}
}

func (s *Server) rebuildOrLog(ctx context.Context) {
	if err := s.rebuild(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("agent API keeps serving its previous entries", attrError, err)
	}
}
