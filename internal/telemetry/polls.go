package telemetry

import (
	"context"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/federation"
)

// Poll results, the values of the result label.
const (
	pollSuccess = "success"
	pollFailure = "failure"
)

// Polls counts the refresher's fetches of partner bundles by partner and
// result, for rate alerts (treaty_federation_polls_total). The composition
// root wraps the refresher's fetcher with it before the telemetry server
// exists, and hands it to Config.Polls to be served.
type Polls struct {
	total *prometheus.CounterVec
}

// NewPolls returns a counter with no series yet.
func NewPolls() *Polls {
	return &Polls{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "treaty_federation_polls_total",
		Help: "Fetches of the partner's bundle endpoint by result (success or failure); a poll that fails over to another of the partner's URLs counts each attempt.",
	}, []string{"trust_domain", "result"})}
}

// Wrap returns f counting each fetch.
func (p *Polls) Wrap(f federation.BundleFetcher) federation.BundleFetcher {
	return &countingFetcher{inner: f, polls: p}
}

type countingFetcher struct {
	inner federation.BundleFetcher
	polls *Polls
}

func (c *countingFetcher) Fetch(ctx context.Context, rel federation.Relationship, endpoint *url.URL, trust *spiffebundle.Bundle) (*bundle.Result, error) {
	res, err := c.inner.Fetch(ctx, rel, endpoint, trust)
	result := pollSuccess
	if err != nil {
		result = pollFailure
	}
	c.polls.total.WithLabelValues(rel.TrustDomain.Name(), result).Inc()
	return res, err
}
