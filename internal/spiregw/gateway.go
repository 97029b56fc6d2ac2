// Package spiregw makes treaty the federation layer of an existing SPIRE
// server (gateway mode): treaty runs no CA of its own. It follows the SPIRE
// server's bundle over its admin socket and publishes it as the local
// bundle (Gateway: a source of the local bundle, and of the bundle
// endpoint's X509-SVID, minted by SPIRE), and writes the partners' bundles
// treaty fetches into SPIRE, so that SPIRE's own agents deliver them to
// workloads (Sink).
package spiregw

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/datastore"
)

// Defaults for zero Config fields.
const (
	// DefaultPoll is how often the SPIRE server's bundle is read: SPIRE's
	// API has no way to wait for a change, and a read over its unix socket
	// costs little, so a rotation is published within about a second.
	DefaultPoll = time.Second
	// DefaultSVIDTTL is the lifetime asked of SPIRE for the bundle
	// endpoint's X509-SVID; SPIRE may grant less.
	DefaultSVIDTTL = time.Hour
	callTimeout    = 10 * time.Second
)

// Store is where the gateway keeps the local bundle it publishes, so that
// its spiffe_sequence never goes backwards across restarts.
type Store interface {
	LocalBundle(ctx context.Context) (datastore.Bundle, error)
	CommitAuthorities(ctx context.Context, change datastore.AuthorityChange) error
}

// Config configures a Gateway.
type Config struct {
	// SocketPath is the SPIRE server's admin socket
	// (spire_server.admin_socket).
	SocketPath  string
	TrustDomain spiffeid.TrustDomain
	Store       Store
	// Poll is how often SPIRE's bundle is read; default DefaultPoll.
	Poll time.Duration
	// SVIDTTL is the lifetime asked for the endpoint's X509-SVID; default
	// DefaultSVIDTTL.
	SVIDTTL time.Duration
	Logger  *slog.Logger
}

// Gateway follows a SPIRE server's bundle and mints SVIDs through it.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	conn    *grpc.ClientConn
	bundles bundlev1.BundleClient
	svids   svidv1.SVIDClient
	tds     trustdomainv1.TrustDomainClient

	mu        sync.Mutex
	published *spiffebundle.Bundle
	document  []byte
	changed   chan struct{}
	// down is the last failure to read SPIRE's bundle, nil while it
	// answers; since is when it started failing.
	down  error
	since time.Time
}

// New connects to the SPIRE server's admin socket and reads its bundle. It
// fails when SPIRE cannot be read and no bundle was published before; with
// one published before, it starts with that one and keeps trying (SPIRE
// restarting must not stop the bundle endpoint).
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.SVIDTTL <= 0 {
		cfg.SVIDTTL = DefaultSVIDTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient("unix://"+cfg.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("spire_server.admin_socket %s: %w", cfg.SocketPath, err)
	}
	g := &Gateway{cfg: cfg, log: log, conn: conn, bundles: bundlev1.NewBundleClient(conn), svids: svidv1.NewSVIDClient(conn),
		tds: trustdomainv1.NewTrustDomainClient(conn), changed: make(chan struct{}), published: spiffebundle.New(cfg.TrustDomain)}
	if err := g.loadStored(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := g.sync(ctx); err != nil {
		if g.document == nil {
			_ = conn.Close()
			return nil, err
		}
		log.Warn("SPIRE server not readable; serving the bundle published before until it is", "error", err)
	}
	return g, nil
}

// Close closes the connection to SPIRE.
func (g *Gateway) Close() error { return g.conn.Close() }

func (g *Gateway) loadStored(ctx context.Context) error {
	stored, err := g.cfg.Store.LocalBundle(ctx)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("load the published bundle: %w", err)
	case stored.TrustDomain != g.cfg.TrustDomain:
		return fmt.Errorf("the datastore belongs to trust domain %q, not %q", stored.TrustDomain.Name(), g.cfg.TrustDomain.Name())
	}
	res, err := bundle.Parse(g.cfg.TrustDomain, stored.Document, bundle.Options{})
	if err != nil {
		return fmt.Errorf("stored local bundle: %w", err)
	}
	res.Bundle.SetSequenceNumber(stored.Sequence)
	g.published, g.document = res.Bundle, stored.Document
	return nil
}

// Run reads SPIRE's bundle every Poll until ctx ends, publishing each
// change; while SPIRE cannot be read the last bundle stays published.
func (g *Gateway) Run(ctx context.Context) error {
	t := time.NewTicker(g.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := g.sync(ctx)
		g.mu.Lock()
		switch {
		case err != nil && g.down == nil && ctx.Err() == nil:
			g.down, g.since = err, time.Now()
			g.log.Warn("cannot follow the SPIRE server's bundle; serving the last one published until it can", "error", err)
		case err != nil:
			g.down = err
		case g.down != nil:
			g.log.Info("following the SPIRE server's bundle again", "down_for", time.Since(g.since).Round(time.Second))
			g.down = nil
		}
		g.mu.Unlock()
	}
}

// Err says why SPIRE's bundle cannot be followed (read from SPIRE, or
// stored once read), or nil while it can.
func (g *Gateway) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down == nil {
		return nil
	}
	return fmt.Errorf("cannot follow the bundle of the SPIRE server at %s since %s (%w): serving the last bundle published",
		g.cfg.SocketPath, g.since.UTC().Format(time.RFC3339), g.down)
}

// sync reads SPIRE's bundle and publishes it if its authorities or refresh
// hint changed. The published spiffe_sequence is SPIRE's when that is
// higher, and otherwise one more than the last published: it rises with
// every change whatever SPIRE does with its own.
func (g *Gateway) sync(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := g.bundles.GetBundle(cctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return fmt.Errorf("read the SPIRE server's bundle over %s: %w", g.cfg.SocketPath, err)
	}
	b, err := bundlewire.FromProto(resp)
	if err != nil {
		return fmt.Errorf("the SPIRE server's bundle: %w", err)
	}
	if b.TrustDomain() != g.cfg.TrustDomain {
		return fmt.Errorf("the SPIRE server at %s is trust domain %q, not %q: fix trust_domain or spire_server.admin_socket",
			g.cfg.SocketPath, b.TrustDomain().Name(), g.cfg.TrustDomain.Name())
	}
	spireSeq := resp.GetSequenceNumber()
	g.mu.Lock()
	defer g.mu.Unlock()
	cur, _ := g.published.SequenceNumber()
	b.SetSequenceNumber(cur)
	doc, err := bundle.Marshal(b)
	if err != nil {
		return err
	}
	if bytes.Equal(doc, g.document) {
		return nil
	}
	b.SetSequenceNumber(max(spireSeq, cur+1))
	if doc, err = bundle.Marshal(b); err != nil {
		return err
	}
	seq, _ := b.SequenceNumber()
	err = g.cfg.Store.CommitAuthorities(ctx, datastore.AuthorityChange{
		LocalBundle: &datastore.Bundle{TrustDomain: g.cfg.TrustDomain, Document: doc, Sequence: seq, UpdatedAt: time.Now()},
		Journal: []datastore.JournalEvent{{At: time.Now(), Kind: datastore.KindX509, Event: "published",
			Detail: fmt.Sprintf("the SPIRE server's bundle, sequence %d (SPIRE's own: %d)", seq, spireSeq)}},
	})
	if err != nil {
		return fmt.Errorf("store the SPIRE server's bundle: %w", err)
	}
	g.published, g.document = b, doc
	close(g.changed)
	g.changed = make(chan struct{})
	g.log.Info("publishing the SPIRE server's bundle", "sequence", seq, "x509_authorities", len(b.X509Authorities()), "jwt_authorities", len(b.JWTAuthorities()))
	return nil
}

// TrustDomain is the trust domain of the SPIRE server.
func (g *Gateway) TrustDomain() spiffeid.TrustDomain { return g.cfg.TrustDomain }

// Bundle returns a copy of the published bundle.
func (g *Gateway) Bundle() *spiffebundle.Bundle {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.published.Clone()
}

// Document returns the published bundle's bytes and sequence; the bytes
// must not be modified.
func (g *Gateway) Document() ([]byte, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	seq, _ := g.published.SequenceNumber()
	return g.document, seq
}

// Changed returns a channel closed at the next change of the published
// bundle.
func (g *Gateway) Changed() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

// MintX509SVID has the SPIRE server mint an X509-SVID for id (the bundle
// endpoint's, in the https_spiffe profile) for a key made here.
func (g *Gateway) MintX509SVID(id spiffeid.ID) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	ttl := int32(min(g.cfg.SVIDTTL/time.Second, 1<<31-1)) //nolint:gosec // clamped
	resp, err := g.svids.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csr, Ttl: ttl})
	if err != nil {
		return nil, fmt.Errorf("have the SPIRE server mint the endpoint's X509-SVID %s: %w", id, err)
	}
	var certs []*x509.Certificate
	for _, der := range resp.GetSvid().GetCertChain() {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("the SPIRE server's X509-SVID: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("the SPIRE server minted an X509-SVID without certificates")
	}
	return &x509svid.SVID{ID: id, Certificates: certs, PrivateKey: key}, nil
}
