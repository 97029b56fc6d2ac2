package agentapi

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Attestation results, as Stats counts them.
const (
	ResultOK      = "ok"      // the agent got its SVID
	ResultDenied  = "denied"  // PermissionDenied: bad evidence, banned
	ResultInvalid = "invalid" // InvalidArgument: malformed request or evidence
	ResultError   = "error"   // anything else: the server's failure, a cut stream
)

// UnknownAttestor is the type attestations of a type this server has no
// attestor for are counted under: the agent chooses the type, so it is not
// a label value as it is.
const UnknownAttestor = "unknown"

// results are the results by index, as stats counts them.
var results = [...]string{resultOK: ResultOK, resultDenied: ResultDenied, resultInvalid: ResultInvalid, resultError: ResultError}

const (
	resultOK = iota
	resultDenied
	resultInvalid
	resultError
)

// SyncBuckets are the upper bounds, in seconds, of the SyncAuthorizedEntries
// duration histogram in Stats.
var SyncBuckets = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30}

// Stats is what the agent API has done since Since (the server's start).
// It is counted in memory and not persisted: a restart starts again from
// zero, and every agent's last-seen time with it.
type Stats struct {
	Since time.Time
	// Attestations counts AttestAgent calls by attestor type (configured
	// types and UnknownAttestor) and result (ResultOK …).
	Attestations map[string]map[string]uint64
	// X509SVIDs and JWTSVIDs count the workload SVIDs issued; AgentSVIDs
	// the agents' own, at attestation and renewal; Renewals the RenewAgent
	// calls that issued one.
	X509SVIDs, JWTSVIDs, AgentSVIDs, Renewals uint64
	// Syncs is the SyncAuthorizedEntries streams ended, whatever their
	// outcome, and how long they lasted.
	Syncs SyncHistogram
}

// SyncHistogram is a cumulative histogram of sync durations over
// SyncBuckets.
type SyncHistogram struct {
	Count      uint64
	SumSeconds float64
	// Buckets[i] counts the streams that lasted at most SyncBuckets[i].
	Buckets []uint64
}

// stats counts the agent API's activity. Counting is a few atomic adds;
// only an agent's first call since the start takes the write lock.
type stats struct {
	since        time.Time
	attestations map[string]*[len(results)]atomic.Uint64 // fixed at New
	x509, jwt    atomic.Uint64
	agentSVIDs   atomic.Uint64
	renewals     atomic.Uint64
	syncCount    atomic.Uint64
	syncNanos    atomic.Uint64
	syncBuckets  []atomic.Uint64 // not cumulative; one more for +Inf

	mu sync.RWMutex
	// lastSeen holds, by agent, the Unix nanoseconds of its last authorized
	// call; agents enter it only once authorized, so it is bounded by the
	// attested nodes, and one that is told it is not attested leaves it.
	lastSeen map[spiffeid.ID]*atomic.Int64
}

func newStats(attestorTypes []string, since time.Time) *stats {
	st := &stats{since: since, attestations: map[string]*[len(results)]atomic.Uint64{},
		syncBuckets: make([]atomic.Uint64, len(SyncBuckets)+1), lastSeen: map[spiffeid.ID]*atomic.Int64{}}
	for _, t := range append(attestorTypes, UnknownAttestor) {
		st.attestations[t] = new([len(results)]atomic.Uint64)
	}
	return st
}

// attestation counts one AttestAgent call of type typ that ended with err.
func (st *stats) attestation(typ string, err error) {
	if st == nil {
		return
	}
	counts, ok := st.attestations[typ]
	if !ok {
		counts = st.attestations[UnknownAttestor]
	}
	counts[resultIndex(err)].Add(1)
}

// resultIndex is the index in results of a call that ended with err.
func resultIndex(err error) int {
	switch {
	case err == nil:
		return resultOK
	case status.Code(err) == codes.PermissionDenied:
		return resultDenied
	case status.Code(err) == codes.InvalidArgument:
		return resultInvalid
	}
	return resultError
}

func (st *stats) issuedX509() {
	if st != nil {
		st.x509.Add(1)
	}
}

func (st *stats) issuedJWT() {
	if st != nil {
		st.jwt.Add(1)
	}
}

func (st *stats) issuedAgent() {
	if st != nil {
		st.agentSVIDs.Add(1)
	}
}

func (st *stats) renewed() {
	if st != nil {
		st.renewals.Add(1)
	}
}

// synced counts one sync stream that lasted d.
func (st *stats) synced(d time.Duration) {
	if st == nil {
		return
	}
	i, _ := slices.BinarySearch(SyncBuckets, d.Seconds())
	st.syncBuckets[i].Add(1)
	st.syncNanos.Add(uint64(max(d, 0)))
	st.syncCount.Add(1)
}

// seen records an authorized call of agent id at t.
func (st *stats) seen(id spiffeid.ID, t time.Time) {
	if st == nil {
		return
	}
	st.mu.RLock()
	last, ok := st.lastSeen[id]
	st.mu.RUnlock()
	if !ok {
		st.mu.Lock()
		if last, ok = st.lastSeen[id]; !ok {
			last = new(atomic.Int64)
			st.lastSeen[id] = last
		}
		st.mu.Unlock()
	}
	last.Store(t.UnixNano())
}

// forget drops an agent that is no longer attested.
func (st *stats) forget(id spiffeid.ID) {
	if st == nil {
		return
	}
	st.mu.Lock()
	delete(st.lastSeen, id)
	st.mu.Unlock()
}

func (st *stats) lastSeenAt(id spiffeid.ID) time.Time {
	if st == nil {
		return time.Time{}
	}
	st.mu.RLock()
	last, ok := st.lastSeen[id]
	st.mu.RUnlock()
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, last.Load())
}

func (st *stats) snapshot() Stats {
	out := Stats{Since: st.since, Attestations: map[string]map[string]uint64{},
		X509SVIDs: st.x509.Load(), JWTSVIDs: st.jwt.Load(), AgentSVIDs: st.agentSVIDs.Load(), Renewals: st.renewals.Load()}
	for typ, counts := range st.attestations {
		byResult := map[string]uint64{}
		for i, r := range results {
			byResult[r] = counts[i].Load()
		}
		out.Attestations[typ] = byResult
	}
	out.Syncs = st.syncHistogram()
	return out
}

// syncHistogram reads the sync counters; a sync ending meanwhile may be
// counted in some fields and not yet in others.
func (st *stats) syncHistogram() SyncHistogram {
	h := SyncHistogram{SumSeconds: time.Duration(min(st.syncNanos.Load(), math.MaxInt64)).Seconds(), Buckets: make([]uint64, len(SyncBuckets))}
	var cum uint64
	for i := range SyncBuckets {
		cum += st.syncBuckets[i].Load()
		h.Buckets[i] = cum
	}
	cum += st.syncBuckets[len(SyncBuckets)].Load()
	h.Count = max(st.syncCount.Load(), cum) // never fewer than the buckets hold
	return h
}

// Stats returns what the agent API has counted since it started.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// LastSeen returns when the agent id last made a call it was authorized
// for (attestation included) since the server started; zero if it has not.
// It is held in memory only.
func (s *Server) LastSeen(id spiffeid.ID) time.Time { return s.stats.lastSeenAt(id) }
