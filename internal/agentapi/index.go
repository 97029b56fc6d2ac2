package agentapi

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// Index answers which registration entries an agent is authorized for,
// from memory: agents sync every few seconds, so the answer must not cost a
// database scan. Rebuild swaps in a new immutable snapshot; readers load
// the current one without locking. An Index is safe for concurrent use.
type Index struct {
	td       spiffeid.TrustDomain
	serverID spiffeid.ID
	now      func() time.Time
	snap     atomic.Pointer[snapshot]
}

// snapshot is one immutable view of the entries. Entries are held by
// pointer into one slice and never changed after build.
type snapshot struct {
	// byParent holds the entries that are not node aliases, by parent ID.
	byParent map[spiffeid.ID][]*datastore.Entry
	// bySPIFFEID holds every entry, node aliases included, by SPIFFE ID.
	bySPIFFEID map[spiffeid.ID][]*datastore.Entry
	// aliasesBySelector holds the node aliases by each of their selectors.
	aliasesBySelector map[datastore.Selector][]*alias
	byID              map[string]*datastore.Entry
}

// alias is a node-alias entry with its distinct selectors counted, so that
// matching an agent is one pass over the agent's selectors.
type alias struct {
	entry     *datastore.Entry
	selectors int
}

// NewIndex returns an index of entries for trust domain td.
func NewIndex(td spiffeid.TrustDomain, entries []datastore.Entry) *Index {
	x := &Index{td: td, serverID: serverID(td), now: time.Now}
	x.Rebuild(entries)
	return x
}

// serverID is the ID node-alias entries are parented to (SPIRE's server
// ID, spiffe://<td>/spire/server).
func serverID(td spiffeid.TrustDomain) spiffeid.ID {
	id, _ := spiffeid.FromPath(td, "/spire/server") // a constant, valid path
	return id
}

// Rebuild replaces the indexed entries with entries, the full list. It
// copies what it keeps; entries of another trust domain (by SPIFFE ID or
// parent ID) are left out, as no agent of ours may receive them.
func (x *Index) Rebuild(entries []datastore.Entry) {
	s := &snapshot{
		byParent:          make(map[spiffeid.ID][]*datastore.Entry),
		bySPIFFEID:        make(map[spiffeid.ID][]*datastore.Entry),
		aliasesBySelector: make(map[datastore.Selector][]*alias),
		byID:              make(map[string]*datastore.Entry, len(entries)),
	}
	kept := make([]datastore.Entry, 0, len(entries))
	lists := make(map[string][]string)
	for _, e := range entries {
		if e.SPIFFEID.TrustDomain() == x.td && e.ParentID.TrustDomain() == x.td {
			e.FederatesWith = shared(lists, e.FederatesWith)
			kept = append(kept, e)
		}
	}
	for i := range kept {
		s.add(&kept[i], x.serverID)
	}
	x.snap.Store(s)
}

// shared returns the list in lists equal to names, adding names if there
// is none. An agent's entries mostly federate with the same trust domains,
// so the index holds each distinct list once instead of once per entry
// (1,000 agents of 10 entries with 10 trust domains each: about 3 MiB
// less).
func shared(lists map[string][]string, names []string) []string {
	if len(names) == 0 {
		return names
	}
	key := strings.Join(names, "\x00") // trust domain names hold no NUL
	if list, ok := lists[key]; ok {
		return list
	}
	lists[key] = names
	return names
}

func (s *snapshot) add(e *datastore.Entry, serverID spiffeid.ID) {
	s.byID[e.ID] = e
	s.bySPIFFEID[e.SPIFFEID] = append(s.bySPIFFEID[e.SPIFFEID], e)
	if e.ParentID != serverID {
		s.byParent[e.ParentID] = append(s.byParent[e.ParentID], e)
		return
	}
	set := distinct(e.Selectors)
	a := &alias{entry: e, selectors: len(set)}
	for sel := range set {
		s.aliasesBySelector[sel] = append(s.aliasesBySelector[sel], a)
	}
}

func distinct(selectors []datastore.Selector) map[datastore.Selector]struct{} {
	set := make(map[datastore.Selector]struct{}, len(selectors))
	for _, sel := range selectors {
		set[sel] = struct{}{}
	}
	return set
}

// Authorized returns the entries the agent agentID, attested with
// agentSelectors, is authorized for, sorted by entry ID: the entries
// parented to the agent and to every node alias whose selectors are a
// subset of the agent's (an alias without selectors never matches), then,
// recursively, the entries parented to the SPIFFE ID of an entry already
// included. Node aliases themselves and expired entries are not returned,
// and nothing is reached through an expired entry. The entries share their
// slices with the index: callers must not modify them.
func (x *Index) Authorized(agentID spiffeid.ID, agentSelectors []datastore.Selector) []datastore.Entry {
	s, now := x.snap.Load(), x.now()
	roots := []spiffeid.ID{agentID}
	for _, a := range s.matchingAliases(agentSelectors, now) {
		roots = append(roots, a.SPIFFEID)
	}
	var out []datastore.Entry
	walked := make(map[spiffeid.ID]bool)
	for len(roots) > 0 {
		parent := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		if walked[parent] {
			continue // a cycle, or two ways to the same parent
		}
		walked[parent] = true
		for _, e := range s.byParent[parent] {
			if !expired(e, now) {
				out = append(out, *e)
				roots = append(roots, e.SPIFFEID)
			}
		}
	}
	slices.SortFunc(out, func(a, b datastore.Entry) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// matchingAliases returns the unexpired node aliases whose selectors the
// agent all has.
func (s *snapshot) matchingAliases(agentSelectors []datastore.Selector, now time.Time) []*datastore.Entry {
	hits := make(map[*alias]int)
	for sel := range distinct(agentSelectors) {
		for _, a := range s.aliasesBySelector[sel] {
			hits[a]++
		}
	}
	var out []*datastore.Entry
	for a, n := range hits {
		if n == a.selectors && !expired(a.entry, now) {
			out = append(out, a.entry)
		}
	}
	return out
}

// Lookup returns the entry entryID if the agent is authorized for it (see
// Authorized), walking from the entry up its chain of parents instead of
// building the whole set.
func (x *Index) Lookup(agentID spiffeid.ID, agentSelectors []datastore.Selector, entryID string) (datastore.Entry, bool) {
	s, now := x.snap.Load(), x.now()
	e, ok := s.byID[entryID]
	if !ok || e.ParentID == x.serverID || expired(e, now) {
		return datastore.Entry{}, false
	}
	u := upward{s: s, serverID: x.serverID, agentID: agentID, agentSelectors: distinct(agentSelectors), now: now, walked: make(map[spiffeid.ID]bool)}
	if !u.reaches(e.ParentID) {
		return datastore.Entry{}, false
	}
	return *e, true
}

// upward answers whether an agent reaches a parent ID: it is the agent, or
// the SPIFFE ID of a matching node alias or of an entry the agent reaches.
type upward struct {
	s              *snapshot
	serverID       spiffeid.ID
	agentID        spiffeid.ID
	agentSelectors map[datastore.Selector]struct{}
	now            time.Time
	walked         map[spiffeid.ID]bool
}

func (u *upward) reaches(parent spiffeid.ID) bool {
	if parent == u.agentID {
		return true
	}
	if u.walked[parent] {
		return false
	}
	u.walked[parent] = true
	for _, e := range u.s.bySPIFFEID[parent] {
		if expired(e, u.now) {
			continue
		}
		if e.ParentID == u.serverID {
			if u.aliasMatches(e) {
				return true
			}
			continue
		}
		if u.reaches(e.ParentID) {
			return true
		}
	}
	return false
}

func (u *upward) aliasMatches(e *datastore.Entry) bool {
	if len(e.Selectors) == 0 {
		return false
	}
	for _, sel := range e.Selectors {
		if _, ok := u.agentSelectors[sel]; !ok {
			return false
		}
	}
	return true
}

func expired(e *datastore.Entry, now time.Time) bool {
	return !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)
}
