package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/treatyhq/treaty/internal/federation"
)

var (
	descLastSuccess = prometheus.NewDesc("treaty_federation_last_success_timestamp_seconds",
		"When the partner's bundle was last fetched successfully (Unix time; absent before the first success).", []string{"trust_domain"}, nil)
	descFailures = prometheus.NewDesc("treaty_federation_consecutive_failures",
		"Failed polls of the partner's bundle endpoint since the last success.", []string{"trust_domain"}, nil)
	descSequence = prometheus.NewDesc("treaty_federation_bundle_sequence",
		"spiffe_sequence of the partner bundle held.", []string{"trust_domain"}, nil)
	descExpiry = prometheus.NewDesc("treaty_federation_authority_expiry_timestamp_seconds",
		"When the first X.509 authority of the partner bundle held expires (Unix time).", []string{"trust_domain"}, nil)
	// descState has one series per partner, its current state, rather than
	// one per state with 0 for the others: at 10,000 partners the five
	// series made 50,000 of 90,000 federation series and half of a
	// scrape's bytes (TestCardinalityAt10kPartners). Alert on
	// treaty_federation_state{state="stale"} == 1, or count by state.
	descState = prometheus.NewDesc("treaty_federation_state",
		"1, labelled with the partner's current state (healthy, failing, stale, never_fetched, static); the other states have no series.", []string{"trust_domain", "state"}, nil)
	descFailureReason = prometheus.NewDesc("treaty_federation_last_failure",
		"1 while the last poll failed, labelled with the classified reason.", []string{"trust_domain", "reason"}, nil)
	descIgnored = prometheus.NewDesc("treaty_federation_ignored_keys",
		"Entries of the partner's last fetched bundle that were ignored, by reason (a bundle check ID such as x5c, key-match, use, key-type); the rest of the bundle is in use.", []string{"trust_domain", "reason"}, nil)
)

// federationCollector turns the refresher's status into metrics at scrape
// time.
type federationCollector struct {
	source StatusSource
}

func (c *federationCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastSuccess, descFailures, descSequence, descExpiry, descState, descFailureReason, descIgnored} {
		ch <- d
	}
}

func (c *federationCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.source.Status() {
		td := st.TrustDomain
		if !st.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(st.LastSuccess.Unix()), td)
		}
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.GaugeValue, float64(st.ConsecutiveFailures), td)
		if st.HasBundle {
			ch <- prometheus.MustNewConstMetric(descSequence, prometheus.GaugeValue, float64(st.Sequence), td)
		}
		if !st.EarliestExpiry.IsZero() {
			ch <- prometheus.MustNewConstMetric(descExpiry, prometheus.GaugeValue, float64(st.EarliestExpiry.Unix()), td)
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, 1, td, string(st.State))
		if st.ConsecutiveFailures > 0 {
			ch <- prometheus.MustNewConstMetric(descFailureReason, prometheus.GaugeValue, 1, td, st.LastReason)
		}
		collectIgnored(ch, st)
	}
}

// collectIgnored counts the partner's ignored entries by reason.
func collectIgnored(ch chan<- prometheus.Metric, st federation.Status) {
	counts := map[string]int{}
	for _, ig := range st.Ignored {
		counts[string(ig.Check)]++
	}
	for reason, n := range counts {
		ch <- prometheus.MustNewConstMetric(descIgnored, prometheus.GaugeValue, float64(n), st.TrustDomain, reason)
	}
}
