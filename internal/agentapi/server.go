package agentapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/nodeattest"
)

// DefaultAgentSVIDTTL is the lifetime of an agent X509-SVID unless
// configured otherwise (spire-server's default_x509_svid_ttl).
const DefaultAgentSVIDTTL = time.Hour

// shutdownTimeout bounds the graceful stop: open streams (an agent's sync)
// get this long to finish before they are cut.
const shutdownTimeout = 5 * time.Second

// Agents keep one connection open; closing it after maxConnectionAge makes
// them handshake again, so that a renewed server or agent SVID and a new
// bundle take effect and no connection outlives the client certificate it
// was verified with for long (spire-server does the same). The grace lets
// a call in flight finish: the agent gives its calls 30 s.
const (
	maxConnectionAge      = 3 * time.Minute
	maxConnectionAgeGrace = 30 * time.Second
)

// readBufferSize 0 lets gRPC read HTTP/2 frames straight from the TLS
// connection. Its default puts a 32 KiB bufio.Reader on every connection,
// for as long as it is open, over the TLS connection's own buffer of
// decrypted records: with every agent holding a connection, that copy was a
// third of the live heap (1,000 agents: 25 MiB), and reading from the TLS
// buffer costs no extra system call. gRPC pools the read buffer itself only
// over a bare TCP connection, and already shares the write buffers.
const readBufferSize = 0

// SVIDSource issues the server's own X509-SVID. The local CA (ca.CA) is one.
type SVIDSource interface {
	// MintX509SVID returns a new X509-SVID for id: its chain, leaf first,
	// and its private key.
	MintX509SVID(id spiffeid.ID) (*x509svid.SVID, error)
}

// Bundle is the local trust domain's bundle. The local CA (ca.CA) is one.
type Bundle interface {
	// Bundle returns the current bundle; callers do not modify it.
	Bundle() *spiffebundle.Bundle
	// Changed returns a channel closed at the next change.
	Changed() <-chan struct{}
}

// Signer signs the agents' X509-SVIDs. The local CA (ca.CA) is one.
type Signer interface {
	// SignX509SVID returns the SVID, leaf first, then the intermediates
	// that chain it to the bundle.
	SignX509SVID(p ca.X509SVIDParams) ([]*x509.Certificate, error)
}

// Store holds the attested nodes and the federated bundles. Implementations
// are safe for concurrent use and return errors wrapping
// datastore.ErrNotFound for what they do not hold. The server reads it at
// most GOMAXPROCS calls at a time (see boundedReads).
type Store interface {
	AttestedNode(ctx context.Context, id spiffeid.ID) (datastore.AttestedNode, error)
	CreateAttestedNode(ctx context.Context, n datastore.AttestedNode) (datastore.AttestedNode, error)
	UpdateAttestedNode(ctx context.Context, n datastore.AttestedNode) (datastore.AttestedNode, error)
	// PromoteNewSerial makes serial the node's current serial if it is
	// its new one, and reports whether it did.
	PromoteNewSerial(ctx context.Context, id spiffeid.ID, serial string) (bool, error)
	FederatedBundle(ctx context.Context, td spiffeid.TrustDomain) (datastore.Bundle, error)
}

// Config configures the agent API. Address, TrustDomain, SVIDSource,
// Bundle, Signer, Store, Entries and SVIDSigner are required.
type Config struct {
	// Address is the TCP address to listen on, e.g. ":8081".
	Address     string
	TrustDomain spiffeid.TrustDomain
	// SVIDSource issues the server's SVID, spiffe://<td>/spire/server,
	// renewed at half its lifetime and whenever Bundle changes.
	SVIDSource SVIDSource
	Bundle     Bundle
	Signer     Signer
	Store      Store
	// Entries is what the entry index is built from: at Serve, then after
	// every EntriesChanged and every change of BundlesChanged (federates_with
	// "*" names the trust domains we hold bundles for).
	Entries EntryStore
	// SVIDSigner signs the workload X509-SVIDs and JWT-SVIDs agents ask for.
	SVIDSigner X509JWTSigner
	// Index answers which entries an agent is authorized for; nil means a
	// new, empty one, filled from Entries when Serve starts.
	Index *Index
	// BundlesChanged returns a channel closed the next time a federated
	// bundle is stored (the refresher's Changed); nil means never.
	BundlesChanged func() <-chan struct{}
	// Attestors are the node attestors agents may use, by Type; none means
	// no agent can attest.
	Attestors []nodeattest.Attestor
	// AgentSVIDTTL is the lifetime of agent SVIDs, capped by the signing
	// authority. Zero means DefaultAgentSVIDTTL.
	AgentSVIDTTL time.Duration
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server serves the agent API.
type Server struct {
	cfg       Config
	serverID  spiffeid.ID
	attestors map[string]nodeattest.Attestor
	log       *slog.Logger
	svid      *serverSVID
	grpc      *grpc.Server
	index     *Index
	stats     *stats
	// changed holds one pending EntriesChanged.
	changed chan struct{}
}

// New checks cfg, mints the server's first SVID and builds the gRPC server.
func New(cfg Config) (*Server, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, fmt.Errorf("agent API: %w", err)
	}
	if cfg.AgentSVIDTTL <= 0 {
		cfg.AgentSVIDTTL = DefaultAgentSVIDTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BundlesChanged == nil {
		cfg.BundlesChanged = func() <-chan struct{} { return nil }
	}
	if cfg.Index == nil {
		cfg.Index = NewIndex(cfg.TrustDomain, nil)
	}
	cfg.Store = newBoundedReads(cfg.Store, runtime.GOMAXPROCS(0))
	s := &Server{cfg: cfg, log: cfg.Logger, attestors: map[string]nodeattest.Attestor{},
		index: cfg.Index, changed: make(chan struct{}, 1)}
	for _, a := range cfg.Attestors {
		if _, dup := s.attestors[a.Type()]; dup {
			return nil, fmt.Errorf("agent API: two node attestors of type %q", a.Type())
		}
		s.attestors[a.Type()] = a
	}
	s.stats = newStats(slices.Collect(maps.Keys(s.attestors)), cfg.Now())
	s.serverID = spiffeid.RequireFromSegments(cfg.TrustDomain, "spire", "server")
	s.svid = &serverSVID{id: s.serverID, source: cfg.SVIDSource, now: cfg.Now}
	if err := s.svid.renew(); err != nil {
		return nil, fmt.Errorf("agent API: %w", err)
	}
	s.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(s.tlsConfig())),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: maxConnectionAge, MaxConnectionAgeGrace: maxConnectionAgeGrace}),
		grpc.ReadBufferSize(readBufferSize),
		grpc.ChainUnaryInterceptor(agentMethodsOnly), grpc.ChainStreamInterceptor(agentStreamsOnly))
	s.register(s.grpc)
	return s, nil
}

func checkConfig(cfg Config) error {
	switch {
	case cfg.Address == "":
		return errors.New("no address")
	case cfg.TrustDomain.IsZero():
		return errors.New("no trust domain")
	case cfg.SVIDSource == nil, cfg.Bundle == nil, cfg.Signer == nil, cfg.Store == nil, cfg.Entries == nil, cfg.SVIDSigner == nil:
		return errors.New("an SVID source, a bundle, a signer, a store, an entry store and an SVID signer are required")
	}
	return nil
}

// register registers the services the agent calls on g.
func (s *Server) register(g *grpc.Server) {
	agentv1.RegisterAgentServer(g, &agentService{s: s})
	bundlev1.RegisterBundleServer(g, &bundleService{s: s})
	entryv1.RegisterEntryServer(g, &entryService{index: s.index, caller: s.agentCaller, log: s.log, stats: s.stats, now: s.cfg.Now})
	svidv1.RegisterSVIDServer(g, &svidService{index: s.index, caller: s.agentCaller, signer: s.cfg.SVIDSigner, log: s.log, now: s.cfg.Now, stats: s.stats})
}

// agentMethods are the methods spire-agent v1.15.3 calls; the other methods
// of the same services are the admin API's, served on the admin socket.
var agentMethods = map[string]bool{
	"/spire.api.server.agent.v1.Agent/AttestAgent":           true,
	"/spire.api.server.agent.v1.Agent/RenewAgent":            true,
	"/spire.api.server.agent.v1.Agent/PostStatus":            true,
	"/spire.api.server.bundle.v1.Bundle/GetBundle":           true,
	"/spire.api.server.bundle.v1.Bundle/GetFederatedBundle":  true,
	"/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries": true,
	"/spire.api.server.entry.v1.Entry/GetAuthorizedEntries":  true,
	"/spire.api.server.svid.v1.SVID/BatchNewX509SVID":        true,
	"/spire.api.server.svid.v1.SVID/NewJWTSVID":              true,
}

func notServedHere(method string) error {
	return status.Errorf(codes.Unimplemented, "%s is not served on the agent API; use the admin socket", method)
}

func agentMethodsOnly(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !agentMethods[info.FullMethod] {
		return nil, notServedHere(info.FullMethod)
	}
	return h(ctx, req)
}

func agentStreamsOnly(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !agentMethods[info.FullMethod] {
		return notServedHere(info.FullMethod)
	}
	return h(srv, ss)
}

// tlsConfig requests, but does not require, a client certificate: agents
// attest and fetch the bundle without one. One that is presented must be
// an X509-SVID of our trust domain that chains to our current bundle.
// Session tickets are off so that every connection is verified afresh.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		ClientAuth:             tls.RequestClientCert,
		GetCertificate:         s.svid.getCertificate,
		VerifyPeerCertificate:  s.verifyClient,
		SessionTicketsDisabled: true,
	}
}

// verifyClient checks a presented client certificate as an X509-SVID
// (SPIFFE X509-SVID standard, section 5) of our own trust domain.
func (s *Server) verifyClient(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return nil
	}
	id, _, err := x509svid.ParseAndVerify(raw, s.cfg.Bundle.Bundle())
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain {
		return fmt.Errorf("client certificate: %q is not in trust domain %q", id, s.cfg.TrustDomain.Name())
	}
	return nil
}

// Listen opens the TCP listener.
func (s *Server) Listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("agent API: listen on %s: %w", s.cfg.Address, err)
	}
	return l, nil
}

// Run listens on Config.Address and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	l, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	return s.Serve(ctx, l)
}

// Serve serves on l until ctx is done, keeping the server SVID and the
// entry index current, then stops gracefully within a bounded time. The
// index is filled before the first call is served; a store that cannot
// list the entries then is an error.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	bundlesChanged := s.cfg.BundlesChanged()
	if err := s.rebuild(ctx); err != nil {
		_ = l.Close()
		if ctx.Err() != nil {
			return nil // stopped before serving
		}
		return fmt.Errorf("agent API: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(l) }()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{}, 2)
	go func() { s.watch(watchCtx); watchDone <- struct{}{} }()
	go func() { s.feed(watchCtx, bundlesChanged); watchDone <- struct{}{} }()
	s.log.Info("agent API serving", attrAddress, l.Addr().String())
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		s.stop()
		err = <-errc
	}
	stopWatch()
	<-watchDone
	<-watchDone
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("agent API: %w", err)
	}
	return nil
}

// stop stops gracefully, cutting what is still open after shutdownTimeout.
func (s *Server) stop() {
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	timer := time.NewTimer(shutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		s.grpc.Stop()
		<-done
	}
}

// watch renews the server SVID at half its lifetime and whenever the
// bundle changes (a new authority may be active), with one reusable timer.
func (s *Server) watch(ctx context.Context) {
	// The channel is taken before the SVID is renewed, every time: a
	// change between New (or the last renewal) and taking the channel
	// would otherwise go unnoticed until the next one.
	changed := s.cfg.Bundle.Changed()
	s.renewSVID()
	timer := time.NewTimer(s.svid.nextCheck())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			changed = s.cfg.Bundle.Changed()
			s.renewSVID()
		case <-timer.C:
			if s.svid.due() {
				s.renewSVID()
			}
		}
		timer.Reset(s.svid.nextCheck())
	}
}

func (s *Server) renewSVID() {
	if err := s.svid.renew(); err != nil {
		s.log.Error("could not renew the server SVID; serving the previous one", attrError, err)
	}
}

// serverSVID is the server's X509-SVID, spiffe://<td>/spire/server, which
// agents check exactly; swapped in without a restart.
type serverSVID struct {
	id      spiffeid.ID
	source  SVIDSource
	now     func() time.Time
	current atomic.Pointer[tls.Certificate]
}

// renew gets a new SVID with a fresh key and starts serving it.
func (v *serverSVID) renew() error {
	svid, err := v.source.MintX509SVID(v.id)
	if err != nil {
		return fmt.Errorf("sign server SVID: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	v.current.Store(cert)
	return nil
}

func (v *serverSVID) halfLife() time.Time {
	leaf := v.current.Load().Leaf
	return leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
}

// due reports whether the SVID has passed half its lifetime.
func (v *serverSVID) due() bool { return !v.now().Before(v.halfLife()) }

// nextCheck is how long until due may first be true.
func (v *serverSVID) nextCheck() time.Duration { return max(v.halfLife().Sub(v.now()), time.Second) }

func (v *serverSVID) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return v.current.Load(), nil
}

// Log attribute keys.
const (
	attrAddress  = "address"
	attrError    = "error"
	attrAgentID  = "agent_id"
	attrMethod   = "method"
	attrReason   = "reason"
	attrAttestor = "attestor"
	attrStep     = "step"
)

// internalError logs err and returns a generic Internal status: the agent
// cannot act on the server's own failures, the operator can.
func (s *Server) internalError(ctx context.Context, msg string, err error) error {
	s.log.ErrorContext(ctx, "agent API call failed", attrStep, msg, attrError, err)
	return status.Error(codes.Internal, msg)
}
