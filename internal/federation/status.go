package federation

import (
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
)

// State summarises a relationship's freshness.
type State string

// States, from best to worst.
const (
	// StateHealthy: the last poll succeeded.
	StateHealthy State = "healthy"
	// StateFailing: the last poll failed, but a success is recent (within
	// three poll intervals); the last good bundle is in use.
	StateFailing State = "failing"
	// StateStale: polls have failed for three poll intervals or more, or
	// never succeeded while a bootstrap bundle is in use.
	StateStale State = "stale"
	// StateNeverFetched: no successful poll and no bundle yet.
	StateNeverFetched State = "never_fetched"
	// StateStatic: a bundle set by hand with no relationship (a device
	// fleet's CA, an air-gapped partner); nothing refreshes it.
	StateStatic State = "static"
)

// StaticExpiryWarning is how long before its first authority expires a
// static bundle is flagged: someone has to import the next one by hand.
const StaticExpiryWarning = 30 * 24 * time.Hour

// StaticStatus describes a federated bundle held without a relationship.
func StaticStatus(td spiffeid.TrustDomain, b *spiffebundle.Bundle, now time.Time) Status {
	st := Status{TrustDomain: td.Name(), State: StateStatic, HasBundle: true, EarliestExpiry: earliestExpiry(b), Endpoint: "none: set by hand (treaty bundle set)"}
	if seq, ok := b.SequenceNumber(); ok {
		st.Sequence = seq
	}
	// Warn within 30 days of expiry, or within the last third of a shorter
	// lifetime: a treaty partner's 30-day authorities would otherwise warn
	// from the day they are issued.
	window := StaticExpiryWarning
	for _, c := range b.X509Authorities() {
		if c.NotAfter.Equal(st.EarliestExpiry) {
			window = min(window, c.NotAfter.Sub(c.NotBefore)/3)
		}
	}
	switch exp := st.EarliestExpiry; {
	case exp.IsZero():
	case !now.Before(exp):
		st.Warnings = append(st.Warnings, fmt.Sprintf("an authority of this static bundle expired at %s: import the current CA with treaty bundle set", exp.UTC().Format(time.RFC3339)))
	case exp.Sub(now) < window:
		st.Warnings = append(st.Warnings, fmt.Sprintf("an authority of this static bundle expires in %s (%s): nothing refreshes it, so import the next CA with treaty bundle set before then",
			roughly(exp.Sub(now)), exp.UTC().Format(time.RFC3339)))
	}
	return st
}

// Status is what is known about one relationship's freshness.
type Status struct {
	TrustDomain         string
	State               State
	LastAttempt         time.Time
	LastSuccess         time.Time
	ConsecutiveFailures int
	// LastError is the last failure's message (with its fix), empty after
	// a success.
	LastError string
	// LastReason is the last failure's classification, if the fetcher gave
	// one.
	LastReason string
	// Warnings are what the last successful fetch skipped or found odd.
	Warnings []string
	// Ignored lists the entries of the last successfully fetched document
	// that were left out of the bundle, with their index and reason (SPIFFE
	// Trust Domain and Bundle §4.2, X509-SVID and JWT-SVID §6).
	Ignored []bundle.Ignored
	// HasBundle tells whether a bundle of the trust domain is stored.
	HasBundle bool
	// Sequence, BundleUpdated and EarliestExpiry describe the stored bundle.
	Sequence       uint64
	BundleUpdated  time.Time
	EarliestExpiry time.Time
	// RefreshHint is the partner's hint; NextAttempt when we poll again.
	RefreshHint time.Duration
	NextAttempt time.Time
	Endpoint    string
	// PolledBy names the replica that polls the partner, when replicas
	// share the polling (RefresherConfig.Leases). On the other replicas,
	// the state and errors describe reading that replica's bundle from the
	// database; the partner's own failures are in the poller's status.
	PolledBy string
}

// state derives the State from the counters.
func (s *Status) state(now time.Time, interval time.Duration) State {
	switch {
	case s.ConsecutiveFailures == 0 && !s.LastSuccess.IsZero():
		return StateHealthy
	case s.LastSuccess.IsZero() && !s.HasBundle:
		return StateNeverFetched
	case s.LastSuccess.IsZero():
		if s.LastAttempt.IsZero() {
			return StateNeverFetched
		}
		return StateStale
	case now.Sub(s.LastSuccess) >= 3*interval:
		return StateStale
	default:
		return StateFailing
	}
}

// roughly writes d in days when it is more than two, else in hours.
func roughly(d time.Duration) string {
	if d > 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}
