// Package telemetry serves treaty's operational endpoints on
// telemetry.address: Prometheus metrics at /metrics, liveness at /healthz
// and readiness at /readyz. Metrics about partners are read from the
// refresher's status at scrape time, so nothing is counted twice.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/treatyhq/treaty/internal/federation"
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
	http     *http.Server
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
	s.registry.MustRegister(s.requests, s.latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.Federation != nil {
		s.registry.MustRegister(&federationCollector{source: cfg.Federation})
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
// endpoint's observer hook.
func (s *Server) ObserveRequest(code int, d time.Duration) {
	c := strconv.Itoa(code)
	s.requests.WithLabelValues(c).Inc()
	s.latency.WithLabelValues(c).Observe(d.Seconds())
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
