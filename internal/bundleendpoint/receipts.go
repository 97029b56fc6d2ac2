package bundleendpoint

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/profile"
)

// DefaultFlushInterval is how often Receipts writes the fetches it saw.
const DefaultFlushInterval = 10 * time.Second

// Partners holds the X.509 authorities of the bundles stored for partner
// trust domains, never the local one's.
type Partners interface {
	// X509Authorities returns the X.509 authorities of the bundle stored
	// for td, or an error if there is none.
	X509Authorities(ctx context.Context, td spiffeid.TrustDomain) ([]*x509.Certificate, error)
}

// ReceiptStore keeps receipts (datastore.Store is one).
type ReceiptStore interface {
	PutReceipts(ctx context.Context, receipts []datastore.Receipt) error
}

// ReceiptsConfig configures Receipts. Partners and Store are required.
type ReceiptsConfig struct {
	Partners Partners
	Store    ReceiptStore
	// FlushInterval is how often the fetches seen are written, at most one
	// row per partner each time; zero means DefaultFlushInterval.
	FlushInterval time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Logger receives write failures; nil discards.
	Logger *slog.Logger
	// Forwarded, when set, reads the client certificate a TLS-terminating
	// proxy passes on in a request header.
	Forwarded Forwarded
}

// Forwarded names the request Header in which TLS-terminating proxies at
// the addresses in Proxies pass on the client certificate they were shown:
// URL-escaped PEM, as NGINX's $ssl_client_escaped_cert. The proxy has
// checked that the client holds the certificate's key (the TLS handshake);
// Receipts checks the rest as for a certificate it was shown itself.
// From any other address the header is ignored.
type Forwarded struct {
	Header  string
	Proxies []netip.Prefix
}

// maxForwardedCerts bounds the certificates read from a forwarded header.
const maxForwardedCerts = 4

// Receipts records, per partner trust domain, the latest authenticated
// fetch of the local bundle: a client that presents an X509-SVID for
// profile.FederationClientID of its trust domain, which verifies with the
// bundle stored for that trust domain (SPIFFE X509-SVID standard, section
// 5). Any other client is served all the same and recorded nowhere. The
// fetches are kept in memory and written in one batch per FlushInterval by
// Run, so a partner polling often costs no more than one write per
// interval, and a new sequence served to it one write more, at once.
// Receipts is safe for concurrent use.
type Receipts struct {
	cfg ReceiptsConfig
	log *slog.Logger

	// kick asks Run to write at once: a partner was served a sequence it
	// had not been served before, which a rotation may be waiting for.
	kick chan struct{}

	mu      sync.Mutex
	pending map[spiffeid.TrustDomain]datastore.Receipt
	// served is the sequence each partner was last known to be served.
	served map[spiffeid.TrustDomain]uint64
}

// NewReceipts returns Receipts; Run writes what it records.
func NewReceipts(cfg ReceiptsConfig) *Receipts {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Receipts{cfg: cfg, log: log, kick: make(chan struct{}, 1),
		pending: map[spiffeid.TrustDomain]datastore.Receipt{}, served: map[spiffeid.TrustDomain]uint64{}}
}

// recordRequest records req's fetch of the bundle with sequence seq: by
// the client certificate req's TLS connection presented, or else by the
// one a trusted proxy passed on (ReceiptsConfig.Forwarded).
func (r *Receipts) recordRequest(req *http.Request, seq uint64) {
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		r.record(req.Context(), req.TLS.PeerCertificates, seq)
		return
	}
	if chain := r.forwarded(req); len(chain) > 0 {
		r.record(req.Context(), chain, seq)
	}
}

// forwarded returns the certificates a trusted proxy passed on in req;
// none when the header is absent, comes from another address, or holds no
// certificate.
func (r *Receipts) forwarded(req *http.Request) []*x509.Certificate {
	f := r.cfg.Forwarded
	if f.Header == "" {
		return nil
	}
	value := req.Header.Get(f.Header)
	if value == "" {
		return nil
	}
	if !f.trusts(req.RemoteAddr) {
		r.log.Debug("ignoring a forwarded client certificate from an address not in bundle_endpoint.trusted_proxies", attrClient, req.RemoteAddr)
		return nil
	}
	text, err := url.PathUnescape(value)
	if err != nil {
		r.log.Debug("ignoring a forwarded client certificate that is not URL-escaped PEM", attrError, err)
		return nil
	}
	var chain []*x509.Certificate
	rest := []byte(text)
	for len(chain) < maxForwardedCerts {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if block.Type != "CERTIFICATE" || err != nil {
			r.log.Debug("ignoring a forwarded client certificate that does not parse", attrError, err)
			return nil
		}
		chain = append(chain, cert)
	}
	return chain
}

// trusts reports whether remoteAddr, a request's RemoteAddr, is one of the
// proxies.
func (f Forwarded) trusts(remoteAddr string) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range f.Proxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// record notes that the client that presented chain was served the bundle
// with sequence seq, if chain authenticates a partner's federation client.
func (r *Receipts) record(ctx context.Context, chain []*x509.Certificate, seq uint64) {
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil || id.Path() != profile.FederationClientPath {
		return
	}
	authorities, err := r.cfg.Partners.X509Authorities(ctx, id.TrustDomain())
	if err != nil {
		return
	}
	now := r.cfg.Now()
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(id.TrustDomain(), authorities), x509svid.WithTime(now)); err != nil {
		return
	}
	td := id.TrustDomain()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending[td] = datastore.Receipt{TrustDomain: td, Sequence: seq, FetchedAt: now}
	if last, ok := r.served[td]; !ok || last != seq {
		r.served[td] = seq
		select {
		case r.kick <- struct{}{}:
		default: // a write is due already
		}
	}
}

// Run writes the recorded fetches every FlushInterval, and at once when a
// partner was served a new sequence, until ctx is done, and once more
// then.
func (r *Receipts) Run(ctx context.Context) error {
	timer := time.NewTimer(r.cfg.FlushInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			defer cancel()
			r.flush(flushCtx)
			return nil
		case <-r.kick:
		case <-timer.C:
		}
		r.flush(ctx)
		timer.Reset(r.cfg.FlushInterval)
	}
}

// flush writes the pending receipts; if that fails they are kept for the
// next time, unless a newer fetch replaced them meanwhile.
func (r *Receipts) flush(ctx context.Context) {
	r.mu.Lock()
	batch := make([]datastore.Receipt, 0, len(r.pending))
	for _, rc := range r.pending {
		batch = append(batch, rc)
	}
	clear(r.pending)
	r.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := r.cfg.Store.PutReceipts(ctx, batch); err != nil {
		r.log.Warn("could not record partners' fetches; will retry", attrError, err)
		r.mu.Lock()
		for _, rc := range batch {
			if _, newer := r.pending[rc.TrustDomain]; !newer {
				r.pending[rc.TrustDomain] = rc
			}
		}
		r.mu.Unlock()
	}
}
