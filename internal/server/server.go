// Package server is treaty's composition root: New wires the datastore, key
// store, CA, Workload API, agent API and admin API from a validated
// configuration, failing before anything is served if any part cannot
// start; Run runs them until the context ends.
package server

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/treatyhq/treaty/internal/adminapi"
	"github.com/treatyhq/treaty/internal/agentapi"
	"github.com/treatyhq/treaty/internal/bundledir"
	"github.com/treatyhq/treaty/internal/bundleendpoint"
	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/config"
	"github.com/treatyhq/treaty/internal/dashboard"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/datastore/postgres"
	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/doctor"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/keystore"
	"github.com/treatyhq/treaty/internal/onboarding"
	"github.com/treatyhq/treaty/internal/profile"
	"github.com/treatyhq/treaty/internal/safepath"
	"github.com/treatyhq/treaty/internal/spiregw"
	"github.com/treatyhq/treaty/internal/telemetry"
	"github.com/treatyhq/treaty/internal/workloadapi"
)

// File names inside the data directory.
const (
	DatabaseFile = "treaty.db"
	KeysDir      = "keys"
	LockFile     = "treaty.lock"
	ACMEDir      = "acme"
)

// Server is a running trust domain.
type Server struct {
	cfg *config.Config
	log *slog.Logger
	// logLevel, when set (WithLogLevel), is the level of log, which the
	// admin API's Logger service changes at run time.
	logLevel *slog.LevelVar
	started  time.Time
	lock     *os.File
	store    datastore.Store
	// integrity checks the store for treaty doctor, which reports it as
	// integrityCheck says.
	integrity      func(context.Context) error
	integrityCheck doctor.DatastoreCheck
	ca             *ca.CA
	admin          *adminapi.Server
	adminListener  net.Listener
	// endpoint is nil when bundle_endpoint.address is not set.
	endpoint          *bundleendpoint.Server
	endpointListener  net.Listener
	fetcher           *federation.Fetcher
	polls             *telemetry.Polls // counts the refresher's fetches
	webRoots          *x509.CertPool   // https_web trust: system + federation.ca_file; nil: system
	refresher         *federation.Refresher
	reconciler        *onboarding.Reconciler // nil without onboarding_dir
	signedDir         *bundledir.Dir         // nil without signed_bundles_dir
	telemetry         *telemetry.Server      // nil without telemetry.address
	telemetryListener net.Listener
	workload          *workloadapi.Server
	workloadListener  net.Listener
	agents            *agentapi.Server // nil without agent_api.address
	agentsListener    net.Listener
	auditFile         *os.File // nil without audit_log
	// link is the state of the link to a datastore shared with other
	// replicas.
	link replicaLink
	// local is where the local bundle comes from: ca, or gateway when
	// treaty is the federation layer of a SPIRE server (then ca, the
	// Workload API and the agent API are nil).
	local   localSource
	gateway *spiregw.Gateway
}

// auditWriter keeps a nil file a nil writer.
func auditWriter(f *os.File) io.Writer {
	if f == nil {
		return nil
	}
	return f
}

// Option adjusts how New builds a server.
type Option func(*Server)

// WithLogLevel names the level that log's handler filters with, so that the
// admin API's Logger service (spire-server logger get|set|reset) can read
// and change it while the server runs.
func WithLogLevel(level *slog.LevelVar) Option {
	return func(s *Server) { s.logLevel = level }
}

// New prepares every part of the server. On error everything already opened
// is closed again, so a bad configuration never leaves a half-started
// server behind.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log.With(attrTrustDomain, cfg.TrustDomain.Name()), started: time.Now()}
	for _, opt := range opts {
		opt(s)
	}
	steps := []func() error{
		s.openDataDir,
		func() error { return s.openStore(ctx) },
		func() error { return s.startLocal(ctx) },
		func() error { return s.startRefresher(ctx) },
		func() error { return s.listenWorkload(ctx) },
		func() error { return s.listenAgents(ctx) },
		func() error { return s.listenTelemetry(ctx) },
		func() error { return s.listenAdmin(ctx) },
		func() error { return s.listenEndpoint(ctx) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// openDataDir creates the data directory, refuses it if another user can
// write it (or a directory above it), warns if others can read it, and
// takes an exclusive lock so two servers never share one store.
func (s *Server) openDataDir() error {
	dir := s.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	if _, err := safepath.Check(safepath.Dir{Path: dir, Name: "data_dir", Holds: "the database and the CA's private keys", Mode: 0o700}); err != nil {
		return err
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		s.log.Warn("DATA DIRECTORY IS READABLE BY OTHER USERS: it holds the CA's private keys; run chmod 700 on it",
			attrPath, dir, attrMode, perm.String())
	}
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("data directory %s is in use by another treaty server; stop it or use another data_dir", dir)
		}
		return fmt.Errorf("lock data directory: %w", err)
	}
	s.lock = f
	return nil
}

// openStore opens the datastore the configuration names: the SQLite file
// in the data directory (sqlite.Open refuses one that is damaged or locked
// by another process, without changing it) or the PostgreSQL database
// several replicas share.
func (s *Server) openStore(ctx context.Context) error {
	ds := s.cfg.Datastore
	switch ds.Driver {
	case config.DriverPostgres:
		pc := postgres.Config{DSN: ds.DSN}
		if ds.PasswordFile != "" {
			pw, err := os.ReadFile(ds.PasswordFile)
			if err != nil {
				return fmt.Errorf("datastore.password_file: %w", err)
			}
			if pc.Password = strings.TrimSpace(string(pw)); pc.Password == "" {
				return fmt.Errorf("datastore.password_file %s is empty; write the database password in it", ds.PasswordFile)
			}
		}
		store, err := postgres.Open(ctx, pc)
		if err != nil {
			return err
		}
		s.store, s.integrity = store, store.Ping
		s.integrityCheck = doctor.DatastoreCheck{OK: store.Where() + " answers",
			Fix: "check that PostgreSQL is running and reachable from this host, and the credentials in datastore.dsn/password_file"}
		s.log.Info("datastore: PostgreSQL", attrWhere, store.Where())
	default:
		store, err := sqlite.Open(ctx, filepath.Join(s.cfg.DataDir, DatabaseFile))
		if err != nil {
			return err
		}
		s.store, s.integrity = store, store.CheckIntegrity
	}
	return nil
}

// caKeys returns where the CA keeps its keys: the key directory in the data
// directory, or, with a seal key, the datastore the replicas share (keys
// found in the directory are moved there as they are first loaded).
func (s *Server) caKeys() (ca.KeyStore, error) {
	dir, err := keystore.Open(filepath.Join(s.cfg.DataDir, KeysDir))
	if err != nil {
		return nil, err
	}
	path := s.cfg.CA.KeySealFile
	if path == "" {
		return dir, nil
	}
	seal, err := keystore.ReadSealKey(path)
	if err != nil {
		return nil, err
	}
	return keystore.OpenSealed(s.store, seal, dir)
}

// shared reports whether other replicas may share the datastore.
func (s *Server) shared() bool { return s.cfg.Datastore.Driver == config.DriverPostgres }

func (s *Server) startCA(ctx context.Context) error {
	keys, err := s.caKeys()
	if err != nil {
		return err
	}
	var up *ca.Upstream
	if u := s.cfg.CA.Upstream; u != nil {
		if up, err = ca.LoadUpstream(u.CertFile, u.KeyFile, u.BundleFile); err != nil {
			return fmt.Errorf("ca.upstream: %w", err)
		}
	}
	s.ca, err = ca.New(ctx, ca.Config{
		TrustDomain: s.cfg.TrustDomain,
		Store:       s.store,
		Keys:        keys,
		KeyType:     s.cfg.CA.KeyType,
		CATTL:       s.cfg.CA.CATTL,
		RefreshHint: s.cfg.BundleEndpoint.RefreshHint,
		X509SVIDTTL: s.cfg.CA.X509SVIDTTL,
		JWTSVIDTTL:  s.cfg.CA.JWTSVIDTTL,
		Upstream:    up,
		Receipts:    s.store,
		Shared:      s.shared(),
		Logger:      s.log.With(attrComponent, "ca"),
	})
	if err != nil && s.shared() && s.cfg.CA.KeySealFile == "" {
		return fmt.Errorf("%w\nIf several replicas share this database, give every one the same ca.key_seal_file: "+
			"the CA's keys then live sealed in the database instead of in each data_dir", err)
	}
	return err
}

// startRefresher loads the federation relationships; polling starts in Run.
func (s *Server) startRefresher(ctx context.Context) error {
	var roots *x509.CertPool // nil: system roots
	if caFile := s.cfg.Federation.CAFile; caFile != "" {
		var err error
		if roots, err = webRoots(caFile); err != nil {
			return err
		}
	}
	s.webRoots = roots
	s.fetcher = federation.NewFetcher(federation.FetcherConfig{
		RootCAs:    roots,
		ClientSVID: federation.NewClientSVID(s.cfg.TrustDomain, s.local, nil, s.log.With(attrComponent, "fetcher")),
		Logger:     s.log.With(attrComponent, "fetcher"),
	})
	s.polls = telemetry.NewPolls() // served when telemetry.address is set
	rc := federation.RefresherConfig{
		Store:            s.store,
		Fetcher:          s.polls.Wrap(s.fetcher),
		LocalTrustDomain: s.cfg.TrustDomain,
		LocalBundle:      s.local.Bundle,
		Polls:            s.store,
		MinRefresh:       s.cfg.Federation.MinRefresh,
		MaxRefresh:       s.cfg.Federation.MaxRefresh,
		Logger:           s.log.With(attrComponent, "federation"),
	}
	if s.shared() {
		// Replicas take turns polling each partner.
		rc.Leases, rc.Replica = s.store, replicaID()
		s.log.Info("polling partners in turn with the other replicas", attrReplica, rc.Replica)
	}
	s.refresher = federation.NewRefresher(rc)
	if err := s.refresher.Reload(ctx); err != nil {
		return err
	}
	if dir := s.cfg.Federation.OnboardingDir; dir != "" {
		s.reconciler = onboarding.NewReconciler(onboarding.ReconcilerConfig{
			Dir: dir, ClassName: s.cfg.Federation.ClassName, Local: s.cfg.TrustDomain,
			Store: s.store, Reloader: s.refresher, Logger: s.log.With(attrComponent, "onboarding"),
		})
	}
	s.signedDir = s.signedBundles()
	return nil
}

// replicaID names this replica in the datastore's leases: the host name
// and a random suffix, so that two replicas on one host, or a replica and
// its restarted self, are told apart.
func replicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "treaty"
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix) // never fails (crypto/rand)
	return host + "-" + hex.EncodeToString(suffix)
}

// webRoots returns the system roots plus the certificates in caFile, for
// https_web partners.
func webRoots(caFile string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("federation.ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("federation.ca_file %s: no PEM certificate found", caFile)
	}
	return pool, nil
}

func (s *Server) listenAdmin(ctx context.Context) error {
	if path := s.cfg.AuditLog; path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("audit_log: %w", err)
		}
		s.auditFile = f
	}
	cfg := adminapi.Config{
		SocketPath:     s.cfg.AdminSocket,
		Bundle:         gatewayBundle{s.gateway},
		Store:          s.store,
		Relationships:  s.store,
		Refresher:      federationView{Refresher: s.refresher, workload: s.workload, now: time.Now},
		EndpointExpiry: s.endpointExpiry,
		Changed:        s.entriesChanged,
		AuditLog:       auditWriter(s.auditFile),
		Invites:        s.invites(),
		Doctor:         s.doctor().Run,
		FederationGaps: s.federationGaps,
		SignedBundles:  s.signedBundleStatus,
		Logger:         s.log.With(attrComponent, "adminapi"),
		LogLevel:       s.logLevel,
		Started:        s.started,
		ServerSVID:     s.endpointSVID,
	}
	if s.ca != nil {
		cfg.Bundle, cfg.Authorities, cfg.SVIDs, cfg.Entries, cfg.Agents = s.ca, s.ca, s.ca, s.store, s.store
	} else { // gateway mode: the SPIRE server holds the CA, the entries and the agents
		cfg.CAElsewhere = s.cfg.SPIREServer.AdminSocket
	}
	admin, err := adminapi.New(cfg)
	if err != nil {
		return err
	}
	l, err := admin.Listen(ctx)
	if err != nil {
		return err
	}
	s.admin, s.adminListener = admin, l
	return nil
}

// listenEndpoint prepares the bundle endpoint, if configured: its
// certificate and its port, so that a problem with either stops start-up.
func (s *Server) listenEndpoint(ctx context.Context) error {
	be := s.cfg.BundleEndpoint
	if be.Address == "" {
		return nil
	}
	endpoint, err := bundleendpoint.New(bundleendpoint.Config{
		Address:           be.Address,
		Profile:           be.Profile,
		EndpointSPIFFEID:  be.EndpointSPIFFEID,
		SVIDSource:        s.local,
		CertFile:          be.Web.CertFile,
		KeyFile:           be.Web.KeyFile,
		RateLimit:         be.RateLimit,
		MaxConnsPerClient: be.MaxConnsPerClient,
		MaxConns:          be.MaxConns,
		ACME:              s.acmeConfig(),
		Observe:           s.observeEndpoint(),
		Source:            s.local,
		Confirm:           s.confirmBundle(),
		Receipts: bundleendpoint.NewReceipts(bundleendpoint.ReceiptsConfig{
			Partners: partnerBundles{s.store, s.cfg.TrustDomain}, Store: s.store,
			Forwarded: bundleendpoint.Forwarded{Header: be.ClientCertificateHeader, Proxies: be.TrustedProxies},
			Logger:    s.log.With(attrComponent, "bundleendpoint"),
		}),
		Logger: s.log.With(attrComponent, "bundleendpoint"),
	})
	if err != nil {
		return err
	}
	l, err := endpoint.Listen(ctx)
	if err != nil {
		return err
	}
	s.endpoint, s.endpointListener = endpoint, l
	return nil
}

// acmeConfig translates bundle_endpoint.web.acme, or returns nil.
func (s *Server) acmeConfig() *bundleendpoint.ACMEConfig {
	a := s.cfg.BundleEndpoint.Web.ACME
	if a == nil {
		return nil
	}
	return &bundleendpoint.ACMEConfig{
		DirectoryURL: a.DirectoryURL, DomainName: a.DomainName, Email: a.Email,
		CAFile: a.CAFile, RenewBefore: a.RenewBefore, CacheDir: filepath.Join(s.cfg.DataDir, ACMEDir),
	}
}

// endpointSVID is the bundle endpoint's X509-SVID (https_spiffe), the
// server's own SVID that the Debug API shows; nil without one.
func (s *Server) endpointSVID() []*x509.Certificate {
	if s.endpoint == nil {
		return nil
	}
	return s.endpoint.SVID()
}

// endpointExpiry reports when the bundle endpoint's certificate expires.
func (s *Server) endpointExpiry() time.Time {
	if s.endpoint == nil {
		return time.Time{}
	}
	return s.endpoint.CertificateExpiry()
}

// listenTelemetry prepares /metrics, /healthz and /readyz, if configured.
func (s *Server) listenTelemetry(ctx context.Context) error {
	if s.cfg.Telemetry.Address == "" {
		return nil
	}
	cfg := telemetry.Config{
		Address:        s.cfg.Telemetry.Address,
		Federation:     federationView{Refresher: s.refresher, workload: s.workload, now: time.Now},
		EndpointExpiry: s.endpointExpiry,
		FederationGaps: func() int { return len(s.gaps()) },
		Polls:          s.polls,
		Dashboard:      s.dashboard(),
		Ready:          s.ready,
		Logger:         s.log.With(attrComponent, "telemetry"),
	}
	if s.agents != nil { // a nil *agentapi.Server is not a nil AgentSource
		cfg.Agents, cfg.Nodes = s.agents, s.store
	}
	if s.ca != nil {
		cfg.Authorities = s.ca
	}
	if s.workload != nil {
		cfg.Workload = s.workload.Stats
	}
	s.telemetry = telemetry.New(cfg)
	l, err := s.telemetry.Listen(ctx)
	if err != nil {
		return err
	}
	s.telemetryListener = l
	return nil
}

// observeEndpoint returns the bundle endpoint's metrics hook, or nil.
func (s *Server) observeEndpoint() func(int, time.Duration) {
	if s.telemetry == nil {
		return nil
	}
	return s.telemetry.ObserveRequest
}

// ready reports whether the server can issue and publish: the CA has an
// active X.509 authority.
func (s *Server) ready() error {
	if s.gateway != nil {
		return s.gateway.Err()
	}
	if s.ca.State(datastore.KindX509).Active == nil {
		return errors.New("no active X.509 authority")
	}
	return s.link.err()
}

// listenWorkload prepares the Workload API and its socket; in gateway mode
// SPIRE's agents serve workloads instead.
func (s *Server) listenWorkload(ctx context.Context) error {
	if s.gatewayMode() {
		return nil
	}
	w, err := workloadapi.New(ctx, workloadapi.Config{
		SocketPath:     s.cfg.WorkloadSocket,
		TrustDomain:    s.cfg.TrustDomain,
		CA:             s.ca,
		Store:          s.store,
		BundlesChanged: s.refresher.Changed,
		Logger:         s.log.With(attrComponent, "workloadapi"),
	})
	if err != nil {
		return err
	}
	l, err := w.Listen(ctx)
	if err != nil {
		return err
	}
	s.workload, s.workloadListener = w, l
	return nil
}

// invites configures the invite service: our advertised endpoint is the
// bundle endpoint's address, unless it listens on every interface (then
// invite -url must say how partners reach it).
func (s *Server) invites() *adminapi.Invites {
	be := s.cfg.BundleEndpoint
	inv := &adminapi.Invites{Profile: string(be.Profile), Fetcher: s.fetcher, Store: s.store}
	if be.Profile == profile.HTTPSSPIFFE {
		inv.EndpointSPIFFEID = be.EndpointSPIFFEID.String()
	}
	if host, _, err := net.SplitHostPort(be.Address); err == nil && host != "" && !net.ParseIP(host).IsUnspecified() {
		inv.EndpointURL = "https://" + be.Address
	}
	return inv
}

// dashboard returns the read-only web page, or nil when it is off. It
// warns when the page is reachable beyond loopback: it shows the whole
// federation.
func (s *Server) dashboard() http.Handler {
	if !s.cfg.Telemetry.Dashboard {
		return nil
	}
	if host, _, err := net.SplitHostPort(s.cfg.Telemetry.Address); err == nil {
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			s.log.Warn("the dashboard is reachable beyond this host; it shows the whole federation, so keep telemetry.address on loopback or put authentication in front", attrAddress, s.cfg.Telemetry.Address)
		}
	}
	view := federationView{Refresher: s.refresher, workload: s.workload, now: time.Now}
	cfg := dashboard.Config{
		TrustDomain: s.cfg.TrustDomain, Federation: view.Status,
		Journal: s.store.Journal, Gaps: s.gaps,
		Logger: s.log.With(attrComponent, "dashboard"),
	}
	if s.ca != nil {
		cfg.Authorities = s.ca.Authorities
	}
	if s.agents != nil {
		cfg.Agents, cfg.LastSeen = s.store.ListAttestedNodes, s.agents.LastSeen
	}
	return dashboard.Handler(cfg)
}

// doctor gathers what treaty doctor's checks look at.
func (s *Server) doctor() *doctor.Doctor {
	be := s.cfg.BundleEndpoint
	view := federationView{Refresher: s.refresher, workload: s.workload, now: time.Now}
	d := &doctor.Doctor{
		CA: gatewayBundle{s.gateway}, CATTL: s.cfg.CA.CATTL, RefreshHint: be.RefreshHint,
		EndpointURL: s.invites().EndpointURL, EndpointProfile: string(be.Profile), EndpointID: be.EndpointSPIFFEID, EndpointRoots: s.webRoots,
		EndpointExpiry: s.endpointExpiry, Federation: view.Status, Gaps: func() int { return len(s.gaps()) },
		DataDir: s.cfg.DataDir, KeysDir: filepath.Join(s.cfg.DataDir, KeysDir),
		Sockets:  map[string]string{"admin_socket": s.cfg.AdminSocket, "workload_socket": s.cfg.WorkloadSocket},
		AuditLog: s.cfg.AuditLog, Integrity: s.integrity, Datastore: s.integrityCheck,
	}
	if s.ca != nil {
		d.CA = s.ca
	} else {
		d.SPIRE = func(context.Context) error { return s.gateway.Err() }
	}
	return d
}

// gaps are the Workload API's federation gaps (none in gateway mode).
func (s *Server) gaps() []workloadapi.Gap {
	if s.workload == nil {
		return nil
	}
	return s.workload.Gaps()
}

// federationGaps converts the Workload API's gaps for the admin API.
func (s *Server) federationGaps() []adminapi.FederationGap {
	var out []adminapi.FederationGap
	for _, g := range s.gaps() {
		out = append(out, adminapi.FederationGap{EntryID: g.EntryID, SPIFFEID: g.SPIFFEID, TrustDomain: g.TrustDomain})
	}
	return out
}

// CA returns the server's certificate authority.
func (s *Server) CA() *ca.CA { return s.ca }

// Run serves until ctx is done or a part fails, then stops every part and
// closes the store.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	g, ctx := errgroup.WithContext(ctx)
	if s.ca != nil {
		g.Go(func() error { return s.ca.Run(ctx) })
	}
	if s.gateway != nil {
		sink := spiregw.NewSink(s.gateway, s.store, s.refresher.Changed, s.log.With(attrComponent, "spire-gateway"))
		g.Go(func() error { return s.gateway.Run(ctx) })
		g.Go(func() error { return sink.Run(ctx) })
	}
	g.Go(func() error { return s.refresher.Run(ctx) })
	if s.reconciler != nil {
		g.Go(func() error { return s.reconciler.Run(ctx) })
	}
	if s.signedDir != nil {
		g.Go(func() error { return s.signedDir.Run(ctx) })
	}
	if s.telemetry != nil {
		g.Go(func() error { return s.telemetry.Serve(ctx, s.telemetryListener) })
	}
	g.Go(func() error { return s.admin.Serve(ctx, s.adminListener) })
	if s.workload != nil {
		g.Go(func() error { return s.workload.Serve(ctx, s.workloadListener) })
	}
	if s.endpoint != nil {
		g.Go(func() error { return s.endpoint.Serve(ctx, s.endpointListener) })
		g.Go(func() error { return s.endpoint.Receipts().Run(ctx) })
	}
	if s.agents != nil {
		g.Go(func() error { return s.agents.Serve(ctx, s.agentsListener) })
	}
	if w, ok := s.store.(watcher); ok && s.shared() {
		g.Go(func() error { return s.followReplicas(ctx, w) })
	}
	s.log.Info("treaty server running", attrAdminSocket, s.cfg.AdminSocket, attrWorkloadSocket, s.cfg.WorkloadSocket, attrDataDir, s.cfg.DataDir)
	err := g.Wait()
	s.log.Info("treaty server stopped")
	return err
}

// close releases what New acquired. After Run it only closes the store
// and the lock: Serve has closed the listener.
func (s *Server) close() {
	for _, l := range []net.Listener{s.adminListener, s.endpointListener, s.telemetryListener, s.workloadListener, s.agentsListener} {
		if l != nil {
			_ = l.Close() // already closed after Serve; closing again is harmless
		}
	}
	if s.fetcher != nil {
		s.fetcher.Close()
	}
	if s.gateway != nil {
		_ = s.gateway.Close()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
	if s.auditFile != nil {
		_ = s.auditFile.Close()
	}
	if s.lock != nil {
		_ = s.lock.Close()
	}
}

// Log attribute keys.
const (
	attrTrustDomain    = "trust_domain"
	attrComponent      = "component"
	attrPath           = "path"
	attrMode           = "mode"
	attrAddress        = "address"
	attrAdminSocket    = "admin_socket"
	attrWorkloadSocket = "workload_socket"
	attrDataDir        = "data_dir"
	attrWhere          = "where"
	attrError          = "error"
	attrReplica        = "replica"
)
