// Package bundleendpoint serves the local trust domain's SPIFFE bundle over
// HTTPS (SPIFFE Trust Domain and Bundle standard, section 5) in either
// profile: https_spiffe, presenting an X509-SVID from our own CA, or
// https_web, presenting a web certificate from files. Responses are
// pre-serialised once per bundle change and the server is hardened for the
// internet: header and idle timeouts, bounded headers, TLS 1.3 or 1.2 with
// ECDHE and AEAD suites only, conditional GET and an optional per-client
// rate limit.
package bundleendpoint

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/acme"

	"github.com/treatyhq/treaty/internal/profile"
)

// Timeouts and limits of the HTTP server; readHeaderTimeout and
// idleTimeout are the defaults of Config's fields.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = 5 * time.Second
)

// HTTP/2 limits. A client fetches one small document and sends no body, so
// it needs few streams, small frames and small receive windows. net/http's
// defaults (250 streams, 1 MiB frames and windows) would let a client make
// each connection hold a megabyte: the buffer of the largest frame read is
// kept for the life of the connection.
const (
	http2MaxConcurrentStreams = 16
	http2MaxReadFrameSize     = 16 << 10 // the protocol's minimum
	http2MaxReceiveConn       = 64 << 10 // the least net/http takes
	http2MaxReceiveStream     = 16 << 10
)

// Source provides the bundle to serve.
type Source interface {
	// Document returns the bundle bytes and their sequence number.
	Document() ([]byte, uint64)
	// Changed returns a channel closed at the next change.
	Changed() <-chan struct{}
}

// Config configures the endpoint. Address, Profile and Source are required;
// https_spiffe needs EndpointSPIFFEID and SVIDSource, https_web CertFile and
// KeyFile.
type Config struct {
	Address          string
	Profile          profile.Name
	EndpointSPIFFEID spiffeid.ID
	SVIDSource       SVIDSource
	CertFile         string
	KeyFile          string
	// ACME, when set, replaces CertFile and KeyFile for https_web.
	ACME *ACMEConfig
	// RateLimit is the requests per second allowed per client IP (for
	// IPv6, its /64); 0 is off.
	RateLimit float64
	// MaxConnsPerClient caps the open connections from one client IP (for
	// IPv6, its /64); a connection over it is closed as soon as it is
	// accepted. Zero means 64: a partner needs one.
	MaxConnsPerClient int
	// MaxConns caps all open connections the same way. Zero means 4096
	// (an idle HTTP/2 connection holds about 40 KB).
	MaxConns int
	// ReadHeaderTimeout bounds the TLS handshake and the reading of a
	// request's headers, so that a client that dribbles them (slowloris)
	// or never finishes its handshake is cut off. Zero means 10 seconds.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a connection, HTTP/1.1 or HTTP/2, that has had no
	// request for this long. Zero means 2 minutes.
	IdleTimeout time.Duration
	Source      Source
	// Confirm, when set, is called before each answer; it returns once
	// Source holds at least the newest bundle committed anywhere (several
	// replicas sharing a datastore), so that a partner never sees the
	// sequence go down from one replica to the next. When it fails the
	// endpoint answers with what it has.
	Confirm func(ctx context.Context) error
	// Receipts, when set, makes the endpoint ask for a client certificate,
	// never requiring one, and records the fetches of partners that
	// present their federation client's X509-SVID; Run it alongside.
	Receipts *Receipts
	// Observe, when set, is called after every request with its status
	// code and duration (metrics).
	Observe func(code int, d time.Duration)
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives certificate renewals and failures; nil discards.
	Logger *slog.Logger
}

// Server is the bundle endpoint.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler *handler
	svid    *svidCert // https_spiffe
	web     *webCert  // https_web with files
	acme    *acmeCert // https_web with ACME
	http    *http.Server
}

// New prepares the endpoint: it loads or issues the serving certificate and
// the first response, so that a problem stops start-up.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, handler: &handler{observe: cfg.Observe, confirm: cfg.Confirm, source: cfg.Source, receipts: cfg.Receipts}}
	if cfg.RateLimit > 0 {
		s.handler.limiter = newLimiter(cfg.RateLimit, cfg.Now)
	}
	doc, seq := cfg.Source.Document()
	s.handler.current.Store(newResponse(doc, seq))
	tlsConfig, err := s.tlsConfig()
	if err != nil {
		return nil, err
	}
	s.http = &http.Server{
		Handler:   s.handler,
		TLSConfig: tlsConfig,
		// net/http bounds the TLS handshake by the least of these.
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          http2MaxConcurrentStreams,
			MaxReadFrameSize:              http2MaxReadFrameSize,
			MaxReceiveBufferPerConnection: http2MaxReceiveConn,
			MaxReceiveBufferPerStream:     http2MaxReceiveStream,
			WriteByteTimeout:              writeTimeout,
		},
		// "OPTIONS *" reaches the handler, which answers 405 as to any
		// method but GET and HEAD.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// withDefaults fills in the zero fields.
func (cfg Config) withDefaults() Config {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	setDefault(&cfg.MaxConnsPerClient, defaultMaxConnsPerClient)
	setDefault(&cfg.MaxConns, defaultMaxConns)
	setDefault(&cfg.ReadHeaderTimeout, readHeaderTimeout)
	setDefault(&cfg.IdleTimeout, idleTimeout)
	return cfg
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// cipherSuites are the TLS 1.2 suites the endpoint accepts: ECDHE key
// exchange with an AEAD (AES-GCM or ChaCha20-Poly1305), for ECDSA and RSA
// certificates (an https_web certificate may be RSA). The SPIFFE Federation
// standard, section 5, requires bundle endpoint servers to meet Mozilla's
// intermediate compatibility; Go has no DHE suites, so this is that list
// without them. CBC and RSA key exchange suites are refused, whatever Go's
// defaults or GODEBUG say. TLS 1.3 suites are not configurable and all fit.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// curvePreferences are Mozilla intermediate's groups (X25519, P-256, P-384)
// and Go's hybrid post-quantum ones. P-521 is left out: no client needs it,
// and it is the costliest handshake a client could choose.
var curvePreferences = []tls.CurveID{
	tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384,
}

// tlsConfig builds the endpoint's TLS configuration for its profile, within
// the SPIFFE Federation standard's section 5 (Mozilla intermediate): TLS
// 1.2 with cipherSuites, or TLS 1.3.
func (s *Server) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     cipherSuites,
		CurvePreferences: curvePreferences,
		ClientAuth:       tls.NoClientCert,
		NextProtos:       []string{"h2", "http/1.1"},
	}
	if s.cfg.Receipts != nil {
		// Asked for, never required, not verified here: a client without
		// one (SPIRE, go-spiffe, curl) is served as before; Receipts
		// authenticates the ones that come.
		cfg.ClientAuth = tls.RequestClientCert
	}
	switch s.cfg.Profile {
	case profile.HTTPSSPIFFE:
		s.svid = &svidCert{id: s.cfg.EndpointSPIFFEID, source: s.cfg.SVIDSource, now: s.cfg.Now}
		if err := s.svid.renew(); err != nil {
			return nil, err
		}
		cfg.GetCertificate = s.svid.getCertificate
	case profile.HTTPSWeb:
		if s.cfg.ACME != nil {
			a, err := newACMECert(*s.cfg.ACME)
			if err != nil {
				return nil, err
			}
			s.acme = a
			cfg.GetCertificate = a.getCertificate
			cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
			return cfg, nil
		}
		s.web = &webCert{certFile: s.cfg.CertFile, keyFile: s.cfg.KeyFile}
		if _, err := s.web.load(); err != nil {
			return nil, err
		}
		cfg.GetCertificate = s.web.getCertificate
	default:
		return nil, fmt.Errorf("unknown bundle endpoint profile %q: use https_web or https_spiffe", s.cfg.Profile)
	}
	return cfg, nil
}

// Listen opens the TCP listener.
func (s *Server) Listen(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("bundle endpoint: listen on %s: %w", s.cfg.Address, err)
	}
	return l, nil
}

// Serve serves TLS on l until ctx is done, keeping the response and the
// certificate current, then shuts down within a bounded time. Connections
// over Config's caps are closed as soon as they are accepted.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	refusals := newRefusalLog(s.log, s.cfg.Now, s.cfg.MaxConnsPerClient, s.cfg.MaxConns)
	l = newConnLimiter(l, s.cfg.MaxConnsPerClient, s.cfg.MaxConns, refusals)
	errc := make(chan error, 1)
	go func() { errc <- s.http.ServeTLS(l, "", "") }()
	if s.acme != nil {
		go s.acme.obtain(ctx, s.log)
	}
	watchDone := make(chan struct{})
	go func() { s.watch(ctx); close(watchDone) }()
	s.log.Info("bundle endpoint serving", attrAddress, l.Addr().String(), attrProfile, s.cfg.Profile)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		err = s.http.Shutdown(shutdownCtx)
	}
	<-watchDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("bundle endpoint: %w", err)
	}
	return nil
}

// Receipts returns Config.Receipts, which the caller runs; nil when unset.
func (s *Server) Receipts() *Receipts { return s.cfg.Receipts }

// Addr is the address the endpoint listens on, for logs and tests.
func (s *Server) Addr() string { return s.cfg.Address }

// SVID returns the X509-SVID the endpoint serves with https_spiffe, leaf
// first: the server's own SVID (SPIRE's Debug API shows it). Other
// profiles have none and get nil.
func (s *Server) SVID() []*x509.Certificate {
	if s.svid == nil {
		return nil
	}
	return s.svid.chain()
}

// CertificateExpiry returns when the certificate served now expires, or
// the zero time if there is none yet (an ACME certificate being obtained).
func (s *Server) CertificateExpiry() time.Time {
	var cert *tls.Certificate
	switch {
	case s.svid != nil:
		cert = s.svid.current.Load()
	case s.web != nil:
		cert = s.web.current.Load()
	case s.acme != nil:
		return s.acme.cachedExpiry()
	}
	if cert == nil || cert.Leaf == nil {
		return time.Time{}
	}
	return cert.Leaf.NotAfter
}

// watch rebuilds the response when the bundle changes and renews or reloads
// the certificate, with one reusable timer.
func (s *Server) watch(ctx context.Context) {
	timer := time.NewTimer(s.nextCheck())
	defer timer.Stop()
	// The channel is taken before the state is read, every time: a change
	// that lands between reading the bundle and asking for the next
	// channel would otherwise go unnoticed until the one after it (seen as
	// a prepared authority that was never published).
	changed := s.cfg.Source.Changed()
	s.refresh(true) // anything that changed since the first response was built
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			changed = s.cfg.Source.Changed()
			s.refresh(true)
		case <-timer.C:
			s.refresh(false)
		}
		timer.Reset(s.nextCheck())
	}
}

func (s *Server) nextCheck() time.Duration {
	if s.svid != nil {
		return s.svid.nextCheck()
	}
	return webReloadInterval
}

// refresh updates what is served. authoritiesChanged forces a new SVID, so
// that the endpoint is signed by the authority now active.
func (s *Server) refresh(authoritiesChanged bool) {
	doc, seq := s.cfg.Source.Document()
	if s.handler.advance(doc, seq) {
		s.log.Info("bundle endpoint serving new bundle", attrSequence, seq)
	}
	switch {
	case s.svid != nil && (authoritiesChanged || s.svid.due()):
		if err := s.svid.renew(); err != nil {
			s.log.Error("could not renew the endpoint SVID; serving the previous one", attrError, err)
		}
	case s.web != nil:
		if reloaded, err := s.web.load(); err != nil {
			s.log.Warn("could not reload the web certificate; serving the previous one", attrError, err)
		} else if reloaded {
			s.log.Info("web certificate reloaded", attrExpiresAt, s.web.current.Load().Leaf.NotAfter)
		}
	}
}

// Log attribute keys.
const (
	attrAddress   = "address"
	attrProfile   = "profile"
	attrSequence  = "sequence"
	attrError     = "error"
	attrExpiresAt = "expires_at"
	attrDomain    = "domain"
	attrHint      = "hint"
	attrClient    = "client"
	attrLimit     = "limit"
	attrRefused   = "refused"
)
