package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/version"
	"github.com/treatyhq/treaty/internal/workloadapi"
)

// AuthoritySource is the local CA's lifecycle state (ca.CA).
type AuthoritySource interface {
	State(kind datastore.AuthorityKind) ca.State
}

var (
	descAuthorityExpiry = prometheus.NewDesc("treaty_authority_expiry_timestamp_seconds",
		"When our own authority expires (Unix time), by kind (x509, jwt) and state (active, prepared, old); a state without an authority has no series.", []string{"kind", "state"}, nil)
	descAuthorityPrepared = prometheus.NewDesc("treaty_authority_prepared",
		"1 while a successor of the active authority of this kind is prepared and published, 0 otherwise.", []string{"kind"}, nil)
	descNextAuthorityPartners = prometheus.NewDesc("treaty_authority_next_partners",
		"Partners with receipts (their treaty fetched our bundle with its federation client SVID) that have (has=yes) or lack (has=no) the prepared authority of the kind (x509 or jwt); no series while none is prepared (docs/rotation.md).", []string{"kind", "has"}, nil)
	descBuildInfo = prometheus.NewDesc("treaty_build_info",
		"Always 1; labelled with treaty's version, VCS revision and the Go version that built it.", []string{"version", "revision", "goversion"}, nil)
	descWorkloadStreams = prometheus.NewDesc("treaty_workload_streams",
		"Workload API Fetch streams open now (X509-SVID, X.509 bundles, JWT bundles).", nil, nil)
	descWorkloadSVIDs = prometheus.NewDesc("treaty_workload_svids_issued_total",
		"SVIDs the Workload API signed since start, by kind (x509, jwt); one shared by several workloads counts once.", []string{"kind"}, nil)
)

// authorityCollector reads our authorities' state at scrape time.
type authorityCollector struct{ source AuthoritySource }

// coverageSource says which partners have a prepared authority (ca.CA);
// an AuthoritySource that is one also feeds treaty_authority_next_partners.
type coverageSource interface {
	NextAuthorityCoverage(ctx context.Context, kind datastore.AuthorityKind) (ca.Coverage, bool, error)
}

// coverageTimeout bounds the read of the receipts at scrape time.
const coverageTimeout = 2 * time.Second

func (c *authorityCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAuthorityExpiry
	ch <- descAuthorityPrepared
	ch <- descNextAuthorityPartners
}

// collectCoverage sends treaty_authority_next_partners for kind, if the
// source knows it and a successor of that kind is prepared.
func (c *authorityCollector) collectCoverage(ch chan<- prometheus.Metric, kind datastore.AuthorityKind) {
	src, ok := c.source.(coverageSource)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), coverageTimeout)
	defer cancel()
	cov, prepared, err := src.NextAuthorityCoverage(ctx, kind)
	if err != nil || !prepared {
		return
	}
	ch <- prometheus.MustNewConstMetric(descNextAuthorityPartners, prometheus.GaugeValue, float64(len(cov.Have)), string(kind), "yes")
	ch <- prometheus.MustNewConstMetric(descNextAuthorityPartners, prometheus.GaugeValue, float64(len(cov.Lack)), string(kind), "no")
}

func (c *authorityCollector) Collect(ch chan<- prometheus.Metric) {
	for _, kind := range []datastore.AuthorityKind{datastore.KindX509, datastore.KindJWT} {
		st := c.source.State(kind)
		for _, a := range []struct {
			state string
			info  *ca.AuthorityInfo
		}{{"active", st.Active}, {"prepared", st.Prepared}, {"old", st.Old}} {
			if a.info != nil {
				ch <- prometheus.MustNewConstMetric(descAuthorityExpiry, prometheus.GaugeValue, float64(a.info.ExpiresAt.Unix()), string(kind), a.state)
			}
		}
		prepared := 0.0
		if st.Prepared != nil {
			prepared = 1
		}
		ch <- prometheus.MustNewConstMetric(descAuthorityPrepared, prometheus.GaugeValue, prepared, string(kind))
		c.collectCoverage(ch, kind)
	}
}

// buildInfo is treaty_build_info.
func buildInfo() prometheus.Metric {
	info := version.Get()
	return prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, info.Version, info.Revision, info.GoVersion)
}

// staticCollector serves metrics fixed at start.
type staticCollector struct{ metrics []prometheus.Metric }

func (c *staticCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.Desc()
	}
}

func (c *staticCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.metrics {
		ch <- m
	}
}

// workloadCollector reads the Workload API's counts at scrape time.
type workloadCollector struct{ stats func() workloadapi.Stats }

func (c *workloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWorkloadStreams
	ch <- descWorkloadSVIDs
}

func (c *workloadCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	ch <- prometheus.MustNewConstMetric(descWorkloadStreams, prometheus.GaugeValue, float64(st.Streams))
	ch <- prometheus.MustNewConstMetric(descWorkloadSVIDs, prometheus.CounterValue, float64(st.X509SVIDsIssued), "x509")
	ch <- prometheus.MustNewConstMetric(descWorkloadSVIDs, prometheus.CounterValue, float64(st.JWTSVIDsIssued), "jwt")
}
