// Package telemetry serves treaty's operational endpoints on
// telemetry.address: Prometheus metrics at /metrics, liveness at /healthz
// and readiness at /readyz. Metrics about partners are read from the
// refresher's status, and those about agents from the agent API's counters
// and the attested nodes, at scrape time, so nothing is counted twice.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/workloadapi"
)

// StatusSource reports partner freshness (the federation refresher).
type StatusSource interface {
	Status() []federation.Status
}

// Config configures the telemetry server.
type Config struct {
	Address string
	// Federation, when set, feeds the per-partner metrics.
	Federation StatusSource
	// EndpointExpiry, when set, reports when the bundle endpoint's
	// certificate expires (zero: none yet).
	EndpointExpiry func() time.Time
	// FederationGaps, when set, counts registration entries that federate
	// with a trust domain the server holds no bundle for.
	FederationGaps func() int
	// Agents, when set, feeds the agent API metrics; Nodes, when set too,
	// the agents by state and the oldest last-seen time (the store is read
	// at most every five seconds).
	Agents AgentSource
	Nodes  NodeLister
	// Polls, when set, serves treaty_federation_polls_total; the refresher's
	// fetcher must be wrapped with it (Polls.Wrap).
	Polls *Polls
	// Authorities, when set, feeds our own authorities' expiry and
	// prepared state.
	Authorities AuthoritySource
	// Workload, when set, feeds the Workload API's streams and SVIDs issued.
	Workload func() workloadapi.Stats
	// Dashboard, when set, is served at /dashboard.
	Dashboard http.Handler
	// Ready reports whether the server can serve; nil means always ready.
	Ready  func() error
	Logger *slog.Logger
}

// Server is the telemetry HTTP server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// byCode holds the request metrics of each status code seen (index:
	// the code minus minCode), so that a request looks up no label.
	byCode [maxCode - minCode + 1]atomic.Pointer[codeMetrics]
	http   *http.Server
}

// The status codes byCode holds; others are looked up for each request.
const (
	minCode = 100
	maxCode = 599
)

// codeMetrics are the bundle endpoint's request metrics for one status
// code.
type codeMetrics struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// New builds the server and its registry.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, registry: prometheus.NewRegistry()}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "treaty_bundle_endpoint_requests_total", Help: "Requests to the bundle endpoint by HTTP status code.",
	}, []string{"code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "treaty_bundle_endpoint_request_duration_seconds", Help: "Time to answer bundle endpoint requests by HTTP status code.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
	}, []string{"code"})
	s.registry.MustRegister(s.requests, s.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&staticCollector{metrics: []prometheus.Metric{buildInfo()}})
	if cfg.Polls != nil {
		s.registry.MustRegister(cfg.Polls.total)
	}
	if cfg.Authorities != nil {
		s.registry.MustRegister(&authorityCollector{source: cfg.Authorities})
	}
	if cfg.Workload != nil {
		s.registry.MustRegister(&workloadCollector{stats: cfg.Workload})
	}
	if cfg.Federation != nil {
		s.registry.MustRegister(&federationCollector{source: cfg.Federation})
	}
	if cfg.Agents != nil {
		s.registry.MustRegister(&agentCollector{source: cfg.Agents, nodes: cfg.Nodes, now: time.Now})
	}
	if cfg.FederationGaps != nil {
		s.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "treaty_workload_federation_gaps",
			Help: "Registration entries federating with a trust domain the server holds no bundle for (their SVIDs are served; peers from that trust domain cannot be verified).",
		}, func() float64 { return float64(cfg.FederationGaps()) }))
	}
	if cfg.EndpointExpiry != nil {
		s.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "treaty_bundle_endpoint_certificate_expiry_timestamp_seconds",
			Help: "When the bundle endpoint's serving certificate (SVID, web or ACME) expires (Unix time; 0 while none is available).",
		}, func() float64 {
			if t := cfg.EndpointExpiry(); !t.IsZero() {
				return float64(t.Unix())
			}
			return 0
		}))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Dashboard != nil {
		mux.Handle("GET /dashboard", cfg.Dashboard)
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	return s
}

// ObserveRequest records one bundle endpoint request; it is the bundle
// endpoint's observer hook, safe for concurrent use.
func (s *Server) ObserveRequest(code int, d time.Duration) {
	m := s.codeMetrics(code)
	m.requests.Inc()
	m.latency.Observe(d.Seconds())
}

// codeMetrics returns the request metrics of code, resolved on its first
// request: a code's series appear once a request has had it. Two requests
// resolving the same code at once get the same metrics.
func (s *Server) codeMetrics(code int) *codeMetrics {
	if code < minCode || code > maxCode {
		return s.resolveCode(code)
	}
	p := &s.byCode[code-minCode]
	if m := p.Load(); m != nil {
		return m
	}
	m := s.resolveCode(code)
	p.Store(m)
	return m
}

func (s *Server) resolveCode(code int) *codeMetrics {
	c := strconv.Itoa(code)
	return &codeMetrics{requests: s.requests.WithLabelValues(c), latency: s.latency.WithLabelValues(c)}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Listen opens the listener, so that a busy port stops start-up.
func (s *Server) Listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("telemetry: listen on %s: %w", s.cfg.Address, err)
	}
	return l, nil
}

// Serve serves on l until ctx is done.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(l) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err = s.http.Shutdown(shutdownCtx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
