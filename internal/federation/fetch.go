package federation

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/profile"
)

// Defaults for zero FetcherConfig fields.
const (
	DefaultDialTimeout         = 5 * time.Second
	DefaultTLSHandshakeTimeout = 5 * time.Second
	DefaultFetchTimeout        = 15 * time.Second
	DefaultMaxBodyBytes        = 1 << 20
)

// Connection pooling.
const (
	// maxIdleConnsPerHost bounds the idle connections kept per endpoint:
	// polls of one relationship are sequential, and a second connection
	// absorbs a manual refresh racing a scheduled poll.
	maxIdleConnsPerHost = 2
	// idleConnTimeout keeps a connection open across polls at the default
	// interval (5m with up to 10% jitter).
	idleConnTimeout = 6 * time.Minute
	// transportTTL drops the transport of an https_spiffe relationship
	// unused for this long: the relationship was deleted or changed.
	transportTTL  = 3 * time.Hour
	pruneInterval = 10 * time.Minute
)

// Log attribute keys of the fetcher.
const (
	attrEndpointURL = "url"
	attrWarnings    = "warnings"
)

// FetcherConfig configures a Fetcher; zero fields take the defaults.
type FetcherConfig struct {
	// DialTimeout bounds name resolution and the TCP connection; default 5s.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake; default 5s.
	TLSHandshakeTimeout time.Duration
	// Timeout bounds a whole request, body included; default 15s.
	Timeout time.Duration
	// MaxBodyBytes caps the size of a response body; default 1 MiB.
	MaxBodyBytes int64
	// RootCAs authenticate https_web endpoints; nil means the system roots.
	RootCAs *x509.CertPool
	// ClientSVID, when set, is presented to endpoints that ask for a
	// client certificate (a treaty partner records our fetches with it);
	// nil fetches anonymously.
	ClientSVID *ClientSVID
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

func (c *FetcherConfig) setDefaults() {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.TLSHandshakeTimeout <= 0 {
		c.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultFetchTimeout
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
}

// Fetcher retrieves partner bundles from their bundle endpoints and
// authenticates the endpoints per profile (SPIFFE Federation, section 5.2).
// Requests are bounded in time and size, redirects are not followed, and
// connections are kept for the next poll: https_web endpoints share one
// transport, each https_spiffe relationship has its own. A Fetcher is safe
// for concurrent use.
type Fetcher struct {
	cfg FetcherConfig
	log *slog.Logger
	web *http.Client

	mu        sync.Mutex
	spiffe    map[spiffeKey]*spiffeClient
	parsed    map[string]parsed
	lastPrune time.Time
}

// spiffeKey identifies the transport of an https_spiffe relationship.
type spiffeKey struct {
	trustDomain spiffeid.TrustDomain
	endpointID  spiffeid.ID
}

// spiffeClient is the HTTP client of an https_spiffe relationship. Its
// transport verifies endpoints with one trust bundle for its whole life: a
// fetch with another bundle gets a new client, so that no connection
// verified with an older bundle is ever reused.
type spiffeClient struct {
	trust    *x509bundle.Bundle
	client   *http.Client
	lastUsed time.Time
}

// NewFetcher returns a fetcher; Close releases its idle connections.
func NewFetcher(cfg FetcherConfig) *Fetcher {
	cfg.setDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fetcher{cfg: cfg, log: log, spiffe: map[spiffeKey]*spiffeClient{}}
	f.web = f.newClient(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs, GetClientCertificate: f.clientCertificate()})
	return f
}

// Fetch retrieves rel's bundle from endpoint, one of
// rel.BundleEndpointURLs, and authenticates the endpoint per rel.Profile.
// For https_spiffe, trust is the bundle we hold for the trust domain of
// rel.EndpointSPIFFEID (stored or bootstrap); it is used for this call's
// connections only. A nil trust fails without network I/O.
//
// Fetch returns the bundle parsed for rel.TrustDomain, warnings included,
// or a *FetchError that says what went wrong and how to fix it.
func (f *Fetcher) Fetch(ctx context.Context, rel Relationship, endpoint *url.URL, trust *spiffebundle.Bundle) (*bundle.Result, error) {
	a := &attempt{rel: rel, url: endpoint, cfg: &f.cfg}
	client, err := f.client(a, trust)
	if err != nil {
		return nil, err
	}
	body, err := a.get(ctx, client)
	if err != nil {
		return nil, err
	}
	res, err := f.parse(rel.TrustDomain, endpoint, body)
	if err != nil {
		return nil, a.invalidBundle(err)
	}
	if res.EffectivelyEmpty() {
		return nil, a.effectivelyEmpty(res)
	}
	f.log.Debug("partner bundle fetched", attrTrustDomain, rel.TrustDomain.Name(), attrEndpointURL, RedactURL(endpoint), attrWarnings, len(res.Warnings))
	return res, nil
}

// parsedTTL bounds how long a parsed bundle is reused for identical bytes,
// so that expiry warnings are recomputed now and then.
const parsedTTL = time.Hour

// parsed is the last bundle parsed from one endpoint.
type parsed struct {
	sum [32]byte
	res *bundle.Result
	at  time.Time
}

// parse parses body unless the endpoint served the very same bytes last
// time: most polls return an unchanged bundle, and with thousands of
// partners parsing them again is most of the steady-state CPU.
func (f *Fetcher) parse(td spiffeid.TrustDomain, endpoint *url.URL, body []byte) (*bundle.Result, error) {
	key, sum, now := td.Name()+" "+endpoint.String(), sha256.Sum256(body), time.Now()
	f.mu.Lock()
	p, ok := f.parsed[key]
	f.mu.Unlock()
	if ok && p.sum == sum && now.Sub(p.at) < parsedTTL {
		return p.res, nil
	}
	res, err := bundle.Parse(td, body, bundle.Options{})
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if f.parsed == nil || len(f.parsed) > maxParsed {
		f.parsed = map[string]parsed{}
	}
	f.parsed[key] = parsed{sum: sum, res: res, at: now}
	f.mu.Unlock()
	return res, nil
}

// maxParsed bounds the parse cache; it is emptied when full.
const maxParsed = 100_000

// Close releases idle connections. The Fetcher remains usable.
func (f *Fetcher) Close() {
	f.web.CloseIdleConnections()
	f.mu.Lock()
	defer f.mu.Unlock()
	for key, c := range f.spiffe {
		c.client.CloseIdleConnections()
		delete(f.spiffe, key)
	}
}

// client returns the HTTP client that authenticates the endpoint per the
// relationship's profile.
func (f *Fetcher) client(a *attempt, trust *spiffebundle.Bundle) (*http.Client, error) {
	if err := a.checkURL(); err != nil {
		return nil, err
	}
	switch a.rel.Profile {
	case profile.HTTPSWeb:
		return f.web, nil
	case profile.HTTPSSPIFFE:
		if err := a.checkTrust(trust); err != nil {
			return nil, err
		}
		return f.spiffeClient(a.rel, x509bundle.FromX509Authorities(trust.TrustDomain(), trust.X509Authorities())), nil
	}
	return nil, a.fail(ReasonConfig, fmt.Sprintf("unknown bundle endpoint profile %q", a.rel.Profile), "use https_web or https_spiffe", nil)
}

// spiffeClient returns the client of an https_spiffe relationship that
// verifies with trust, replacing the one that verified with another bundle.
func (f *Fetcher) spiffeClient(rel Relationship, trust *x509bundle.Bundle) *http.Client {
	key := spiffeKey{trustDomain: rel.TrustDomain, endpointID: rel.EndpointSPIFFEID}
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prune(now)
	c, ok := f.spiffe[key]
	if !ok || !c.trust.Equal(trust) {
		if ok {
			c.client.CloseIdleConnections()
			f.log.Debug("endpoint trust bundle changed; reconnecting", attrTrustDomain, rel.TrustDomain.Name())
		}
		tlsConfig := spiffeTLSConfig(rel.EndpointSPIFFEID, trust)
		tlsConfig.GetClientCertificate = f.clientCertificate()
		c = &spiffeClient{trust: trust, client: f.newClient(tlsConfig)}
		f.spiffe[key] = c
	}
	c.lastUsed = now
	return c.client
}

// prune drops transports unused for transportTTL; the caller holds f.mu.
func (f *Fetcher) prune(now time.Time) {
	if now.Sub(f.lastPrune) < pruneInterval {
		return
	}
	f.lastPrune = now
	for key, c := range f.spiffe {
		if now.Sub(c.lastUsed) > transportTTL {
			c.client.CloseIdleConnections()
			delete(f.spiffe, key)
		}
	}
}

// clientCertificate returns the GetClientCertificate of the fetcher's TLS
// configurations: ClientSVID's, or nil (anonymous).
func (f *Fetcher) clientCertificate() func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if f.cfg.ClientSVID == nil {
		return nil
	}
	return f.cfg.ClientSVID.GetClientCertificate
}

// newClient returns a bounded client that does not follow redirects.
func (f *Fetcher) newClient(tlsConfig *tls.Config) *http.Client {
	dialer := &net.Dialer{Timeout: f.cfg.DialTimeout}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         dialer.DialContext,
			TLSClientConfig:     tlsConfig,
			TLSHandshakeTimeout: f.cfg.TLSHandshakeTimeout,
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: maxIdleConnsPerHost,
			IdleConnTimeout:     idleConnTimeout,
		},
		Timeout:       f.cfg.Timeout,
		CheckRedirect: checkRedirect,
	}
}

// maxRedirects bounds how many redirects one fetch follows.
const maxRedirects = 3

// checkRedirect follows up to maxRedirects redirects to https URLs, as the
// SPIFFE Federation standard recommends (sections 5.2.1.4, 5.2.2.4, 7.5.1:
// treat every redirect as temporary). The target is authenticated exactly
// like the configured URL, since the same TLS configuration applies. A
// redirect to plain HTTP or to a URL with userinfo (the target must be a
// valid bundle endpoint URL too, sections 5.2.1.3 and 5.2.2.3), or one too
// many, is handed back to Fetch, which reports it.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if CheckEndpointURL(req.URL) != nil || len(via) > maxRedirects {
		return http.ErrUseLastResponse
	}
	return nil
}

// spiffeTLSConfig authenticates an https_spiffe endpoint (SPIFFE
// Federation, section 5.2.2.4): its certificate must be an X509-SVID for
// endpointID that verifies with trust. Web PKI and the host name play no
// part, and there is no fallback to them.
func spiffeTLSConfig(endpointID spiffeid.ID, trust *x509bundle.Bundle) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection authenticates the X509-SVID instead of web PKI
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifySVID(cs.PeerCertificates, endpointID, trust)
		},
	}
}

// verifySVID checks the endpoint's chain: an X509-SVID (SPIFFE X509-SVID,
// section 5) with exactly the expected SPIFFE ID, signed by an authority
// of trust. It returns a *peerError that says which of these failed.
func verifySVID(chain []*x509.Certificate, want spiffeid.ID, trust *x509bundle.Bundle) error {
	if len(chain) == 0 {
		return &peerError{reason: ReasonTLSHandshake, detail: "the endpoint presented no certificate", fix: "the endpoint must present an X509-SVID"}
	}
	if _, ok := spiffeIDOf(chain[0]); !ok {
		return webCertOnSPIFFE(chain[0])
	}
	got, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return invalidSVID(err)
	}
	if got != want {
		return wrongSPIFFEID(want, got)
	}
	if _, _, err := x509svid.Verify(chain, trust); err != nil {
		return svidChainError(chain, trust, err, time.Now())
	}
	return nil
}

// attempt is one Fetch call: what it fetches and how far it got.
type attempt struct {
	rel   Relationship
	url   *url.URL
	cfg   *FetcherConfig
	phase atomic.Int32 // a phase, updated by the transport's trace hooks
}

// phase is how far a request got, to explain timeouts.
type phase int32

// Request phases, in order.
const (
	phaseConnect phase = iota
	phaseHandshake
	phaseWaiting
	phaseBody
)

func (a *attempt) setPhase(p phase) { a.phase.Store(int32(p)) }

func (a *attempt) currentPhase() phase { return phase(a.phase.Load()) }

// trace follows the request through the transport.
func (a *attempt) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		TLSHandshakeStart: func() { a.setPhase(phaseHandshake) },
		GotConn:           func(httptrace.GotConnInfo) { a.setPhase(phaseWaiting) },
	}
}

// checkURL refuses URLs the SPIFFE Federation standard does not allow
// (sections 5.2.1.1 and 5.2.2.1: https, a host, no userinfo). Only a
// relationship stored before these were refused on entry gets here.
func (a *attempt) checkURL() error {
	if err := CheckEndpointURL(a.url); err != nil {
		return a.fail(ReasonConfig, err.Error(),
			"fix the relationship's bundle endpoint URL (treaty federation update -bundleEndpointURL https://...)", err)
	}
	return nil
}

// checkTrust checks what an https_spiffe fetch needs before any I/O.
func (a *attempt) checkTrust(trust *spiffebundle.Bundle) error {
	want := a.rel.EndpointSPIFFEID
	switch {
	case want.IsZero():
		return a.fail(ReasonConfig, "profile https_spiffe without an endpoint SPIFFE ID",
			fmt.Sprintf("set the endpoint SPIFFE ID, e.g. -endpointSpiffeID spiffe://%s/spire/server", a.rel.TrustDomain.Name()), nil)
	case trust == nil:
		return a.noBootstrapBundle(want.TrustDomain())
	case trust.TrustDomain() != want.TrustDomain():
		return a.fail(ReasonConfig, fmt.Sprintf("the bundle given to authenticate %s is for %q", want, trust.TrustDomain().Name()),
			"authenticate the endpoint with the bundle of its SPIFFE ID's trust domain", nil)
	}
	return nil
}

// get performs the request and returns the body of a 200 response that is
// not too large and not an HTML page.
func (a *attempt) get(ctx context.Context, client *http.Client) ([]byte, error) {
	ctx = httptrace.WithClientTrace(ctx, a.trace())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url.String(), nil)
	if err != nil {
		return nil, a.fail(ReasonConfig, "cannot build the request: "+err.Error(), "", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, a.transportError(err)
	}
	defer resp.Body.Close()
	if err := a.checkResponse(resp); err != nil {
		return nil, err
	}
	return a.readBody(resp)
}

// checkResponse refuses redirects, statuses other than 200 and declared
// lengths over the cap.
func (a *attempt) checkResponse(resp *http.Response) error {
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return a.redirected(resp)
	case resp.StatusCode != http.StatusOK:
		return a.badStatus(resp)
	case resp.ContentLength > a.cfg.MaxBodyBytes:
		return a.tooLarge(resp.ContentLength)
	}
	return nil
}

// readBody reads at most MaxBodyBytes+1 bytes: one more than allowed tells
// that the body is too large without reading the rest of it.
func (a *attempt) readBody(resp *http.Response) ([]byte, error) {
	a.setPhase(phaseBody)
	body, err := io.ReadAll(io.LimitReader(resp.Body, a.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, a.transportError(err)
	}
	if int64(len(body)) > a.cfg.MaxBodyBytes {
		return nil, a.tooLarge(-1)
	}
	if isHTML(resp.Header.Get("Content-Type"), body) {
		return nil, a.htmlPage(body)
	}
	return body, nil
}
