// Package adminapi serves SPIRE's server API (from spire-api-sdk) on treaty's
// admin unix socket, so that the spire-server CLI, spire-controller-manager
// and treaty's own CLI manage treaty the same way. It maps every error to a
// gRPC status once, with a message an operator can act on.
package adminapi

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	debugv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/debug/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	loggerv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/logger/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/adminwire"
	"github.com/treatyhq/treaty/internal/finding"
	"github.com/treatyhq/treaty/internal/socket"
)

// shutdownTimeout bounds how long Run waits for in-flight calls on exit.
const shutdownTimeout = 5 * time.Second

// Config configures the admin API server.
type Config struct {
	// SocketPath is the unix socket to listen on. Its directory is created
	// with mode 0700 if missing; the socket gets SocketMode.
	SocketPath string
	// SocketMode is the socket's file mode; default 0600.
	SocketMode fs.FileMode
	// Bundle, Authorities and SVIDs are the local CA (ca.CA is all three),
	// as the Bundle and invite, LocalAuthority and SVID services use it.
	// Without Authorities or SVIDs (treaty as the federation layer of a
	// SPIRE server, whose CA it is) the LocalAuthority or SVID service
	// answers Unimplemented.
	Bundle      LocalBundle
	Authorities LocalAuthorities
	SVIDs       SVIDSigner
	// CAElsewhere, when set, says where the CA is when treaty has none (the
	// SPIRE server's admin socket): calls to the services that need one,
	// and to the Entry and Agent APIs, are answered with where to go.
	CAElsewhere string
	Store       BundleStore
	// Relationships and Refresher serve the TrustDomain API and the
	// federation status.
	Relationships RelationshipStore
	Refresher     Refresher
	// Entries, when set, serves the Entry API.
	Entries EntryStore
	// Agents, when set, serves the administrative calls of the Agent API
	// (list, show, ban, evict agents; join tokens). A join token's alias
	// entry goes to Entries.
	Agents AgentStore
	// Doctor, when set, serves treaty doctor's checks.
	Doctor func(ctx context.Context) []finding.Finding
	// Invites, when set, serves treaty's invite and join calls.
	Invites *Invites
	// Changed, when set, is called after every successful call that may
	// have changed entries or bundles (anything but Get, List and Count),
	// before the call returns, so the Workload API serves the change by the
	// time the caller sees success.
	Changed func(ctx context.Context)
	// FederationGaps, when set, adds to the status report the entries that
	// federate with trust domains the server holds no bundle for.
	FederationGaps func() []FederationGap
	// SignedBundles, when set, adds the files of the signed bundles
	// directory to the status report.
	SignedBundles func() []adminwire.SignedBundleFile
	// EndpointExpiry, when set, adds the bundle endpoint certificate's
	// expiry to the status report.
	EndpointExpiry func() time.Time
	// AuditLog, when set, receives every change as one JSON line; the log
	// gets every change too, marked audit=true.
	AuditLog io.Writer
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
	// LogLevel, when set, is the level of the server's log, which the
	// Logger API reads and changes; it is reset to the level it holds when
	// New is called. Without it the Logger API answers Unimplemented.
	LogLevel *slog.LevelVar
	// Started is when the server started, for the Debug API's uptime;
	// zero means when New is called.
	Started time.Time
	// ServerSVID, when set, returns the server's own X509-SVID chain, which
	// the Debug API shows.
	ServerSVID func() []*x509.Certificate
}

// Server is the admin API server.
type Server struct {
	cfg    Config
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
}

// New builds a server; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.SocketPath == "" || cfg.Bundle == nil || cfg.Store == nil || cfg.Relationships == nil || cfg.Refresher == nil {
		return nil, errors.New("adminapi: socket path, CA, stores and refresher are required")
	}
	if cfg.SocketMode == 0 {
		cfg.SocketMode = 0o600
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, health: health.NewServer()}
	audit := &auditor{log: log.With("component", "audit"), file: cfg.AuditLog, now: time.Now}
	s.grpc = grpc.NewServer(grpc.Creds(socket.PeerCredentials{}), grpc.ChainUnaryInterceptor(s.elsewhere, audit.intercept, s.logErrors, s.notifyChanges))
	bundlev1.RegisterBundleServer(s.grpc, &bundleService{ca: cfg.Bundle, store: cfg.Store, entries: cfg.Entries})
	if cfg.Authorities != nil {
		localauthorityv1.RegisterLocalAuthorityServer(s.grpc, &localAuthorityService{ca: cfg.Authorities})
	}
	if signer, ok := cfg.Authorities.(BundleSigner); ok { // the CA, which holds the JWT keys
		s.grpc.RegisterService(&signedBundleServiceDesc, &signedBundleService{ca: signer})
	}
	trustdomainv1.RegisterTrustDomainServer(s.grpc, &trustDomainService{
		local: cfg.Bundle.TrustDomain(), store: cfg.Relationships, refresher: cfg.Refresher, now: time.Now,
	})
	if cfg.SVIDs != nil {
		svidv1.RegisterSVIDServer(s.grpc, &svidService{ca: cfg.SVIDs})
	}
	if cfg.Entries != nil {
		entryv1.RegisterEntryServer(s.grpc, &entryService{local: cfg.Bundle.TrustDomain(), store: cfg.Entries, bundles: cfg.Store, log: log})
	}
	if cfg.Agents != nil {
		agentv1.RegisterAgentServer(s.grpc, &agentService{local: cfg.Bundle.TrustDomain(), store: cfg.Agents, entries: cfg.Entries, now: time.Now})
	}
	if cfg.CAElsewhere != "" {
		// Served so that elsewhere can say where to go (gRPC answers an
		// unknown service before any interceptor runs).
		localauthorityv1.RegisterLocalAuthorityServer(s.grpc, localauthorityv1.UnimplementedLocalAuthorityServer{})
		svidv1.RegisterSVIDServer(s.grpc, svidv1.UnimplementedSVIDServer{})
		entryv1.RegisterEntryServer(s.grpc, entryv1.UnimplementedEntryServer{})
		agentv1.RegisterAgentServer(s.grpc, agentv1.UnimplementedAgentServer{})
	}
	if cfg.Doctor != nil {
		s.grpc.RegisterService(&doctorServiceDesc, &doctorService{run: cfg.Doctor})
	}
	if cfg.Invites != nil {
		s.grpc.RegisterService(&inviteServiceDesc, &inviteService{cfg: *cfg.Invites, ca: cfg.Bundle, refresher: cfg.Refresher})
	}
	if cfg.LogLevel != nil {
		loggerv1.RegisterLoggerServer(s.grpc, &loggerService{level: cfg.LogLevel, launch: cfg.LogLevel.Level(), log: log})
	}
	debugv1.RegisterDebugServer(s.grpc, &debugService{started: cmp.Or(cfg.Started, time.Now()), now: time.Now,
		bundles: cfg.Store, entries: cfg.Entries, agents: cfg.Agents, local: cfg.Bundle, svid: cfg.ServerSVID})
	s.grpc.RegisterService(&statusServiceDesc, &statusService{refresher: cfg.Refresher, relationships: cfg.Relationships, endpointExpiry: cfg.EndpointExpiry, gaps: cfg.FederationGaps, authorities: cfg.Authorities, signedBundles: cfg.SignedBundles})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	return s, nil
}

// Listen creates the socket. Run calls it if it has not been called; the
// server composes it separately so that a socket problem stops start-up
// before anything else runs.
func (s *Server) Listen(ctx context.Context) (net.Listener, error) {
	return socket.Listen(ctx, socket.Config{Path: s.cfg.SocketPath, Name: "admin_socket", DirMode: 0o700, Mode: s.cfg.SocketMode, Logger: s.log})
}

// Serve serves on l until ctx is done, then stops gracefully within a
// bounded time.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(l) }()
	s.health.Resume()
	select {
	case err := <-errc:
		return fmt.Errorf("admin API: %w", err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(shutdownTimeout):
		s.grpc.Stop()
	}
	_ = os.Remove(s.cfg.SocketPath)
	return nil
}

// Run listens and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	l, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}

func (s *Server) logErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		st := status.Convert(err)
		s.log.Info("admin request failed", attrMethod, info.FullMethod, attrCode, st.Code().String(), attrError, st.Message())
	}
	return resp, err
}

// notifyChanges calls Config.Changed after a successful mutating call.
func (s *Server) notifyChanges(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err == nil && s.cfg.Changed != nil && mutates(info.FullMethod) {
		s.cfg.Changed(ctx)
	}
	return resp, err
}

// mutates reports whether a method may change state: by SPIRE's naming,
// reads are Get*, List* and Count*.
func mutates(fullMethod string) bool {
	method := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	for _, read := range []string{"Get", "List", "Count", "Check", "Watch", "Status"} {
		if strings.HasPrefix(method, read) {
			return false
		}
	}
	return true
}

// Log attribute keys.
const (
	attrMethod = "method"
	attrCode   = "code"
	attrError  = "error"
	attrLevel  = "level"
)

// servedElsewhere are the services a SPIRE server serves when treaty is its
// federation layer: its CA and its entries and agents are its own.
var servedElsewhere = []string{
	"/spire.api.server.localauthority.v1.LocalAuthority/",
	"/spire.api.server.svid.v1.SVID/",
	"/spire.api.server.entry.v1.Entry/",
	"/spire.api.server.agent.v1.Agent/",
}

// elsewhere answers the calls that belong to the SPIRE server behind
// treaty, saying where to send them.
func (s *Server) elsewhere(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if s.cfg.CAElsewhere != "" {
		for _, prefix := range servedElsewhere {
			if strings.HasPrefix(info.FullMethod, prefix) {
				return nil, status.Errorf(codes.Unimplemented, "treaty is the federation layer of the SPIRE server at %s, "+
					"whose CA, entries and agents are its own: send this to it (spire-server ... -socketPath %s)", s.cfg.CAElsewhere, s.cfg.CAElsewhere)
			}
		}
	}
	return next(ctx, req)
}
