// Package workloadapi serves the SPIFFE Workload API on a unix socket:
// workloads on the server's host are attested from their kernel
// credentials, matched against registration entries, and receive X509- and
// JWT-SVIDs, the local bundle and the federated bundles their entries
// federate with. Every stream waits on one change feed, so thousands of
// streams cost no polling.
package workloadapi

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/socket"
)

// Store is what the Workload API reads from the datastore.
type Store interface {
	ListEntries(ctx context.Context) ([]datastore.Entry, error)
	ListFederatedBundles(ctx context.Context, after string, limit int) ([]datastore.Bundle, error)
}

// Authority is the local CA.
type Authority interface {
	Bundle() *spiffebundle.Bundle
	Changed() <-chan struct{}
	SignX509SVID(p ca.X509SVIDParams) ([]*x509.Certificate, error)
	SignJWTSVID(p ca.JWTSVIDParams) (string, time.Time, error)
}

// Config configures the Workload API server.
type Config struct {
	// SocketPath is the unix socket. Its directory is created 0755 and the
	// socket is 0777: any local process may ask, and attestation decides
	// what it gets.
	SocketPath  string
	TrustDomain spiffeid.TrustDomain
	CA          Authority
	Store       Store
	// BundlesChanged returns a channel closed the next time a federated
	// bundle is stored by federation (the refresher's Changed). Changes made
	// through the admin API are reported with Server.Notify.
	BundlesChanged func() <-chan struct{}
	// Logger receives attestation failures and federation gaps; nil
	// discards them.
	Logger *slog.Logger
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// debounce coalesces bursts of changes (a batch of entries, many partner
// bundles at once) into one snapshot.
const debounce = 50 * time.Millisecond

// shutdownTimeout bounds how long Serve waits for streams on exit.
const shutdownTimeout = 2 * time.Second

// Server is the Workload API server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	state    *state
	cache    *svidCache
	attestor *attestor
	grpc     *grpc.Server
	notify   chan struct{}
	// loading serialises snapshot rebuilds, so an older read never
	// replaces a newer one.
	loading sync.Mutex
	// streams counts the open Fetch streams.
	streams atomic.Int64
}

// Stats are the Workload API's counts, for metrics.
type Stats struct {
	// Streams are the Fetch streams open now (X509-SVID, X.509 and JWT
	// bundles).
	Streams int
	// X509SVIDsIssued and JWTSVIDsIssued count the SVIDs signed since
	// start; an SVID shared by several workloads counts once.
	X509SVIDsIssued, JWTSVIDsIssued uint64
}

// Stats returns the current counts; safe for concurrent use.
func (s *Server) Stats() Stats {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return Stats{Streams: int(s.streams.Load()), X509SVIDsIssued: s.cache.x509Issued, JWTSVIDsIssued: s.cache.jwtIssued}
}

// New builds the server and loads entries and bundles, so a store problem
// stops start-up.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.SocketPath == "" || cfg.CA == nil || cfg.Store == nil || cfg.TrustDomain.IsZero() {
		return nil, errors.New("workloadapi: socket path, trust domain, CA and store are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BundlesChanged == nil {
		cfg.BundlesChanged = func() <-chan struct{} { return nil }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, log: log,
		state:    newState(cfg.Store, cfg.CA, log, cfg.Now),
		cache:    newSVIDCache(cfg.CA, cfg.Now),
		attestor: &attestor{procDir: "/proc"},
		notify:   make(chan struct{}, 1),
	}
	if err := s.state.load(ctx, false); err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(grpc.Creds(socket.PeerCredentials{}))
	workload.RegisterSpiffeWorkloadAPIServer(s.grpc, &handler{s: s})
	return s, nil
}

// Notify tells the server that entries or federated bundles changed. It
// never blocks; the change is served within the settle time.
func (s *Server) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Refresh rebuilds the snapshot now and returns once streams have been
// woken, so that an entry created through the admin API is served as soon
// as the create call returns.
func (s *Server) Refresh(ctx context.Context) {
	s.reload(ctx, false)
}

// Gaps lists entries that federate with trust domains the server holds no
// bundle for.
func (s *Server) Gaps() []Gap { return s.state.Gaps() }

// FederatedBundles returns the federated bundles being served, by trust
// domain. The map must not be modified.
func (s *Server) FederatedBundles() map[spiffeid.TrustDomain]*spiffebundle.Bundle {
	return s.state.snapshot().federated
}

// Listen creates the socket.
func (s *Server) Listen(ctx context.Context) (net.Listener, error) {
	return socket.Listen(ctx, socket.Config{Path: s.cfg.SocketPath, Name: "workload_socket", DirMode: 0o755, Mode: 0o777, Logger: s.log})
}

// Serve serves on l and keeps the snapshot current until ctx is done.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(l) }()
	loopDone := make(chan struct{})
	go func() { s.watch(ctx); close(loopDone) }()
	var err error
	select {
	case err = <-errc:
		err = fmt.Errorf("workload API: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownTimeout):
		s.grpc.Stop()
	}
	<-loopDone
	_ = os.Remove(s.cfg.SocketPath)
	return err
}

// Run listens and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	l, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}

// watch publishes a new snapshot after the CA, federated bundles or
// entries change, and when a cached SVID reaches half its life.
func (s *Server) watch(ctx context.Context) {
	renew := time.NewTimer(time.Hour)
	defer renew.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	pending, caPending := false, false
	caChanged, bundlesChanged := s.cfg.CA.Changed(), s.cfg.BundlesChanged()
	for {
		s.resetRenewal(renew)
		select {
		case <-ctx.Done():
			return
		case <-caChanged:
			caChanged, caPending = s.cfg.CA.Changed(), true
		case <-bundlesChanged:
			bundlesChanged = s.cfg.BundlesChanged()
		case <-s.notify:
		case <-renew.C:
		case <-s.cache.issued:
			continue
		case <-settle.C:
			s.reload(ctx, caPending)
			pending, caPending = false, false
			continue
		}
		if !pending {
			pending = true
			settle.Reset(debounce)
		}
	}
}

func (s *Server) resetRenewal(t *time.Timer) {
	next := s.cache.expire()
	wait := time.Hour
	if !next.IsZero() {
		wait = max(next.Sub(s.cfg.Now()), 0)
	}
	t.Reset(wait)
}

func (s *Server) reload(ctx context.Context, caChanged bool) {
	s.loading.Lock()
	defer s.loading.Unlock()
	if err := s.state.load(ctx, caChanged); err != nil {
		s.log.Error("workload API keeps serving its previous view", attrError, err)
		return
	}
	snap := s.state.snapshot()
	live := map[string]int64{}
	for _, e := range snap.entries {
		live[e.ID] = e.RevisionNumber
	}
	s.cache.forget(func(k svidKey) bool {
		rev, ok := live[k.entryID]
		return ok && rev == k.revision && k.caGeneration == snap.caGeneration
	})
}

// Log attribute keys.
const (
	attrError       = "error"
	attrTrustDomain = "trust_domain"
	attrEntryID     = "entry_id"
	attrSPIFFEID    = "spiffe_id"
	attrPID         = "pid"
	attrUID         = "uid"
	attrMethod      = "method"
)
