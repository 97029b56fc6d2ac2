package workloadapi

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// snapshot is one immutable view of everything the Workload API serves
// from. Streams hold a snapshot and the channel that is closed when the
// next one replaces it.
type snapshot struct {
	// generation increases with every snapshot.
	generation uint64
	// caGeneration increases when the local authorities change; SVIDs
	// signed in an older CA generation are reissued.
	caGeneration uint64
	local        *spiffebundle.Bundle
	federated    map[spiffeid.TrustDomain]*spiffebundle.Bundle
	entries      []datastore.Entry
	changed      chan struct{}
}

// Gap is an entry that federates with a trust domain the server holds no
// bundle for. The entry is served anyway; its workloads cannot verify
// peers from that trust domain until a bundle arrives.
type Gap struct {
	EntryID     string `json:"entry_id"`
	SPIFFEID    string `json:"spiffe_id"`
	TrustDomain string `json:"trust_domain"`
}

// state loads snapshots and publishes them.
type state struct {
	store Store
	ca    Authority
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	current *snapshot
	gaps    map[Gap]bool
	// parsed caches federated bundles by trust domain with the document
	// they were parsed from, so an unchanged bundle is not parsed again.
	parsed map[spiffeid.TrustDomain]parsedBundle
}

type parsedBundle struct {
	document []byte
	bundle   *spiffebundle.Bundle
}

func newState(store Store, authority Authority, log *slog.Logger, now func() time.Time) *state {
	return &state{
		store: store, ca: authority, log: log, now: now,
		current: &snapshot{local: authority.Bundle(), changed: make(chan struct{})},
		gaps:    map[Gap]bool{}, parsed: map[spiffeid.TrustDomain]parsedBundle{},
	}
}

// snapshot returns the current snapshot.
func (s *state) snapshot() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// load reads entries and federated bundles and publishes a new snapshot,
// waking every stream waiting on the old one.
func (s *state) load(ctx context.Context, caChanged bool) error {
	entries, err := s.store.ListEntries(ctx)
	if err != nil {
		return fmt.Errorf("load registration entries: %w", err)
	}
	federated, err := s.loadFederated(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current
	next := &snapshot{
		generation: old.generation + 1, caGeneration: old.caGeneration,
		local: s.ca.Bundle(), federated: federated, entries: entries, changed: make(chan struct{}),
	}
	if caChanged {
		next.caGeneration++
	}
	s.current = next
	close(old.changed)
	s.updateGaps(next)
	return nil
}

// loadFederated returns every federated bundle, parsing only those whose
// document changed since the last load.
func (s *state) loadFederated(ctx context.Context) (map[spiffeid.TrustDomain]*spiffebundle.Bundle, error) {
	out := map[spiffeid.TrustDomain]*spiffebundle.Bundle{}
	const page = 1000
	after := ""
	for {
		bundles, err := s.store.ListFederatedBundles(ctx, after, page)
		if err != nil {
			return nil, fmt.Errorf("load federated bundles: %w", err)
		}
		for _, b := range bundles {
			if parsed, err := s.parse(b); err == nil {
				out[b.TrustDomain] = parsed
			} else {
				s.log.Error("stored federated bundle does not parse; not served", attrTrustDomain, b.TrustDomain.Name(), attrError, err)
			}
		}
		if len(bundles) < page {
			break
		}
		after = bundles[len(bundles)-1].TrustDomain.Name()
	}
	s.mu.Lock()
	for td := range s.parsed {
		if out[td] == nil {
			delete(s.parsed, td)
		}
	}
	s.mu.Unlock()
	return out, nil
}

func (s *state) parse(b datastore.Bundle) (*spiffebundle.Bundle, error) {
	s.mu.Lock()
	cached, ok := s.parsed[b.TrustDomain]
	s.mu.Unlock()
	if ok && bytes.Equal(cached.document, b.Document) {
		return cached.bundle, nil
	}
	parsed, err := spiffebundle.Parse(b.TrustDomain, b.Document)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.parsed[b.TrustDomain] = parsedBundle{document: b.Document, bundle: parsed}
	s.mu.Unlock()
	return parsed, nil
}

// updateGaps logs, once each, entries that federate with a trust domain
// we hold no bundle for, and when such a gap closes. The caller holds s.mu.
func (s *state) updateGaps(snap *snapshot) {
	now := map[Gap]bool{}
	for _, e := range snap.entries {
		for _, name := range e.FederatesWith {
			if name == datastore.FederateWithAll {
				continue
			}
			td, err := spiffeid.TrustDomainFromString(name)
			if err != nil || snap.federated[td] != nil {
				continue
			}
			g := Gap{EntryID: e.ID, SPIFFEID: e.SPIFFEID.String(), TrustDomain: td.Name()}
			now[g] = true
			if !s.gaps[g] {
				s.log.Warn("entry federates with a trust domain we hold no bundle for; its SVID is served, "+
					"but its workloads cannot verify that trust domain's peers until a bundle arrives "+
					"(create a relationship or run treaty bundle set)",
					attrEntryID, g.EntryID, attrSPIFFEID, g.SPIFFEID, attrTrustDomain, g.TrustDomain)
			}
		}
	}
	for g := range s.gaps {
		if !now[g] {
			s.log.Info("federation gap closed", attrEntryID, g.EntryID, attrTrustDomain, g.TrustDomain)
		}
	}
	s.gaps = now
}

// Gaps lists entries federating with trust domains that have no bundle,
// ordered by trust domain and entry.
func (s *state) Gaps() []Gap {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Gap, 0, len(s.gaps))
	for g := range s.gaps {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b Gap) int {
		return cmp.Or(strings.Compare(a.TrustDomain, b.TrustDomain), strings.Compare(a.EntryID, b.EntryID))
	})
	return out
}
