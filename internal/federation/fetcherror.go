package federation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/profile"
)

// Reason classifies why a fetch failed, for status, metrics and the advice
// in the error message.
type Reason string

// Failure reasons.
const (
	// ReasonConnectionRefused: nothing listens at the endpoint's address.
	ReasonConnectionRefused Reason = "connection_refused"
	// ReasonTimeout: a connection, handshake or response took too long.
	ReasonTimeout Reason = "timeout"
	// ReasonDNS: the endpoint's host name does not resolve.
	ReasonDNS Reason = "dns"
	// ReasonTLSHandshake: the TLS handshake failed for another reason.
	ReasonTLSHandshake Reason = "tls_handshake"
	// ReasonWebCertOnSPIFFE: an https_spiffe endpoint presents a
	// certificate without a SPIFFE ID.
	ReasonWebCertOnSPIFFE Reason = "web_cert_on_spiffe"
	// ReasonSVIDOnWeb: an https_web endpoint presents an X509-SVID that
	// web PKI does not trust.
	ReasonSVIDOnWeb Reason = "svid_on_web"
	// ReasonWrongSPIFFEID: the endpoint's SPIFFE ID is not the configured one.
	ReasonWrongSPIFFEID Reason = "wrong_spiffe_id"
	// ReasonUnknownAuthority: the endpoint's X509-SVID does not chain to
	// the bundle we hold, typically a stale bundle after a CA rotation.
	ReasonUnknownAuthority Reason = "unknown_authority"
	// ReasonNameMismatch: the https_web certificate is not valid for the
	// URL's host.
	ReasonNameMismatch Reason = "name_mismatch"
	// ReasonExpiredCertificate: a certificate of the chain, or the
	// authority that signed it, is expired or not yet valid.
	ReasonExpiredCertificate Reason = "expired_certificate"
	// ReasonUnknownWebAuthority: web PKI roots do not trust the https_web
	// certificate.
	ReasonUnknownWebAuthority Reason = "unknown_web_authority"
	// ReasonHTTPStatus: the endpoint answered with a status other than 200.
	ReasonHTTPStatus Reason = "http_status"
	// ReasonHTMLPage: the endpoint answered 200 with an HTML page.
	ReasonHTMLPage Reason = "html_page"
	// ReasonBodyTooLarge: the response is larger than the size cap.
	ReasonBodyTooLarge Reason = "body_too_large"
	// ReasonInvalidBundle: the document is not a valid bundle of the
	// partner's trust domain; Err is the *bundle.Error.
	ReasonInvalidBundle Reason = "invalid_bundle"
	// ReasonEffectivelyEmpty: the document has entries but every one of
	// them is ignored (SPIFFE Trust Domain and Bundle §4.1.3).
	ReasonEffectivelyEmpty Reason = "effectively_empty"
	// ReasonRedirect: the endpoint redirects; redirects are not followed.
	ReasonRedirect Reason = "redirect"
	// ReasonNoBootstrapBundle: https_spiffe without a bundle to
	// authenticate the endpoint with.
	ReasonNoBootstrapBundle Reason = "no_bootstrap_bundle"
	// ReasonConfig: the relationship cannot be fetched as configured
	// (bad URL, unknown profile, missing endpoint SPIFFE ID).
	ReasonConfig Reason = "config"
	// ReasonCanceled: the caller cancelled the fetch.
	ReasonCanceled Reason = "canceled"
	// ReasonNetwork: any other network failure.
	ReasonNetwork Reason = "network"
)

// FetchError is a failed fetch: what went wrong, in plain words, and what
// to do about it.
type FetchError struct {
	// TrustDomain is the partner trust domain's name.
	TrustDomain string
	// URL is the endpoint URL, user info redacted.
	URL    string
	Reason Reason
	// Detail says what happened.
	Detail string
	// Fix says what to do; empty when there is nothing obvious.
	Fix string
	// Err is the underlying error, if any.
	Err error
}

func (e *FetchError) Error() string {
	msg := fmt.Sprintf("fetch bundle of %q from %s: %s", e.TrustDomain, e.URL, e.Detail)
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *FetchError) Unwrap() error { return e.Err }

// FailureReason returns the reason, for status and metrics.
func (e *FetchError) FailureReason() string { return string(e.Reason) }

// peerError is why an https_spiffe endpoint's certificate was refused. The
// TLS stack returns it unchanged, wrapped in the transport's errors, and
// Fetch turns it into a FetchError.
type peerError struct {
	reason Reason
	detail string
	fix    string
	err    error
}

func (e *peerError) Error() string { return e.detail }

func (e *peerError) Unwrap() error { return e.err }

// fail builds the FetchError of this attempt.
func (a *attempt) fail(reason Reason, detail, fix string, err error) *FetchError {
	u := "<no URL>"
	if a.url != nil {
		u = RedactURL(a.url)
	}
	return &FetchError{TrustDomain: a.rel.TrustDomain.Name(), URL: u, Reason: reason, Detail: detail, Fix: fix, Err: err}
}

// classifiers recognise transport errors, most specific first; each
// returns nil when err is not its kind.
var classifiers = []func(*attempt, error) *FetchError{
	(*attempt).peerFailure,
	(*attempt).webCertFailure,
	(*attempt).dnsFailure,
	(*attempt).refusedFailure,
	(*attempt).timeoutFailure,
	(*attempt).canceledFailure,
	(*attempt).tlsFailure,
}

// transportError classifies an error of the HTTP transport.
func (a *attempt) transportError(err error) error {
	for _, classify := range classifiers {
		if fe := classify(a, err); fe != nil {
			return fe
		}
	}
	return a.fail(ReasonNetwork, "the request failed: "+cause(err), "check the network path to the endpoint", err)
}

// cause strips the method and URL that *url.Error adds.
func cause(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

func (a *attempt) peerFailure(err error) *FetchError {
	pe, ok := errors.AsType[*peerError](err)
	if !ok {
		return nil
	}
	return a.fail(pe.reason, pe.detail, pe.fix, err)
}

func (a *attempt) dnsFailure(err error) *FetchError {
	de, ok := errors.AsType[*net.DNSError](err)
	if !ok {
		return nil
	}
	what := de.Err
	if de.IsNotFound {
		what = "no such host"
	}
	return a.fail(ReasonDNS, fmt.Sprintf("cannot resolve %q: %s", de.Name, what),
		"check the host name in the bundle endpoint URL, and that this server's DNS resolver knows it", err)
}

func (a *attempt) refusedFailure(err error) *FetchError {
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return a.fail(ReasonConnectionRefused, fmt.Sprintf("connection refused: nothing listens on %s", hostPort(a.url)),
		"check that the partner's bundle endpoint is running and that the URL has the right port (a firewall may also reject the connection)", err)
}

func (a *attempt) timeoutFailure(err error) *FetchError {
	ne, ok := errors.AsType[net.Error](err)
	timedOut := ok && ne.Timeout()
	if !timedOut && !errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	p := a.currentPhase()
	return a.fail(ReasonTimeout, fmt.Sprintf("timed out %s (limit %s)", p, a.limit(p)), p.timeoutFix(), err)
}

func (a *attempt) canceledFailure(err error) *FetchError {
	if !errors.Is(err, context.Canceled) {
		return nil
	}
	return a.fail(ReasonCanceled, "the fetch was cancelled", "", err)
}

func (a *attempt) tlsFailure(err error) *FetchError {
	if _, ok := errors.AsType[tls.RecordHeaderError](err); ok || errors.Is(err, http.ErrSchemeMismatch) {
		return a.fail(ReasonTLSHandshake, "the endpoint does not speak TLS (plain HTTP?)",
			"bundle endpoints are served over HTTPS: check the port, or make the server or the proxy in front of it serve TLS", err)
	}
	if a.currentPhase() != phaseHandshake {
		return nil
	}
	return a.fail(ReasonTLSHandshake, "TLS handshake failed: "+cause(err),
		fmt.Sprintf("check that the endpoint serves TLS 1.2 or later and is meant for profile %s", a.rel.Profile), err)
}

// limit is the configured limit that applies in phase p.
func (a *attempt) limit(p phase) time.Duration {
	switch p {
	case phaseConnect:
		return min(a.cfg.DialTimeout, a.cfg.Timeout)
	case phaseHandshake:
		return min(a.cfg.TLSHandshakeTimeout, a.cfg.Timeout)
	}
	return a.cfg.Timeout
}

func (p phase) String() string {
	switch p {
	case phaseConnect:
		return "while connecting"
	case phaseHandshake:
		return "in the TLS handshake: the server accepted the connection but did not complete the handshake"
	case phaseWaiting:
		return "waiting for the response"
	}
	return "reading the response body"
}

func (p phase) timeoutFix() string {
	switch p {
	case phaseConnect:
		return "check the host and port in the URL, and that no firewall silently drops the traffic"
	case phaseHandshake:
		return "check that the port serves TLS (not plain HTTP or another protocol) and that a proxy or load balancer in front of it forwards the traffic"
	}
	return "the endpoint is reachable but too slow: ask the partner to check its bundle endpoint and any proxy in front of it"
}

// webCertFailure explains why web PKI refused an https_web endpoint.
func (a *attempt) webCertFailure(err error) *FetchError {
	ve, ok := errors.AsType[*tls.CertificateVerificationError](err)
	if !ok || len(ve.UnverifiedCertificates) == 0 {
		return nil
	}
	chain := ve.UnverifiedCertificates
	he, nameMismatch := errors.AsType[x509.HostnameError](ve.Err)
	if id, ok := spiffeIDOf(chain[0]); ok && (nameMismatch || !webTrusted(chain, a.cfg.RootCAs)) {
		detail, fix := profile.SVIDOnWeb(id)
		return a.fail(ReasonSVIDOnWeb, detail, fix, err)
	}
	if nameMismatch {
		return a.fail(ReasonNameMismatch, fmt.Sprintf("the endpoint's certificate is valid for %s, not for %q", certNames(he.Certificate), he.Host),
			fmt.Sprintf("use a URL whose host is one of those names, or ask the partner for a certificate that includes %q", he.Host), err)
	}
	if ce, ok := errors.AsType[x509.CertificateInvalidError](ve.Err); ok && ce.Reason == x509.Expired {
		return a.fail(ReasonExpiredCertificate, "the endpoint's certificate "+validity(ce.Cert, time.Now()), fixExpired, err)
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](ve.Err); ok {
		return a.fail(ReasonUnknownWebAuthority,
			fmt.Sprintf("the endpoint's certificate (for %s) is issued by %q, which the web PKI roots do not trust", certNames(chain[0]), chain[0].Issuer),
			"if the partner uses a private or enterprise CA, add its root certificate to federation.ca_file in the server config; otherwise a TLS-intercepting proxy may be in the path", err)
	}
	return a.fail(ReasonTLSHandshake, "the endpoint's certificate is not valid: "+ve.Err.Error(), "ask the partner to fix the endpoint's certificate", err)
}

const fixExpired = "the partner must renew it; if the dates look wrong, check the clocks on both sides"

// webTrusted reports whether web PKI roots trust chain, host name aside.
func webTrusted(chain []*x509.Certificate, roots *x509.CertPool) bool {
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates})
	return err == nil
}

// spiffeIDOf returns the SPIFFE ID in cert's URI SANs, if there is one.
func spiffeIDOf(cert *x509.Certificate) (spiffeid.ID, bool) {
	for _, u := range cert.URIs {
		if id, err := spiffeid.FromURI(u); err == nil {
			return id, true
		}
	}
	return spiffeid.ID{}, false
}

// certNames lists the host names and addresses cert is valid for.
func certNames(cert *x509.Certificate) string {
	names := append([]string(nil), cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no host name (it has no DNS or IP SAN)"
	}
	return strings.Join(names, ", ")
}

// validity says how cert is outside its validity period at now.
func validity(cert *x509.Certificate, now time.Time) string {
	if now.Before(cert.NotBefore) {
		return fmt.Sprintf("(subject %q) is not valid before %s", cert.Subject, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("(subject %q) expired at %s, %s ago", cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339), now.Sub(cert.NotAfter).Round(time.Second))
}

// webCertOnSPIFFE: an https_spiffe endpoint presents a web certificate.
func webCertOnSPIFFE(leaf *x509.Certificate) *peerError {
	return &peerError{
		reason: ReasonWebCertOnSPIFFE,
		detail: fmt.Sprintf("the endpoint presents a certificate without a SPIFFE ID (no URI SAN; it is for %s, issued by %q): it looks like an https_web endpoint",
			certNames(leaf), leaf.Issuer),
		fix: "use -bundleEndpointProfile https_web, or if an ingress terminates TLS in front of it, switch the ingress to TLS passthrough",
	}
}

func invalidSVID(err error) *peerError {
	return &peerError{
		reason: ReasonTLSHandshake,
		detail: "the endpoint's certificate is not a valid X509-SVID: " + err.Error(),
		fix:    "the partner's endpoint must present an X509-SVID (SPIFFE X509-SVID standard)",
		err:    err,
	}
}

func wrongSPIFFEID(want, got spiffeid.ID) *peerError {
	return &peerError{
		reason: ReasonWrongSPIFFEID,
		detail: fmt.Sprintf("the endpoint presents SPIFFE ID %s, but the relationship expects %s", got, want),
		fix:    fmt.Sprintf("if %s is the partner's bundle endpoint, set -endpointSpiffeID %s on the relationship; otherwise the URL reaches another server", got, got),
	}
}

// svidChainError explains why the endpoint's X509-SVID does not verify
// with the bundle we hold.
func svidChainError(chain []*x509.Certificate, trust *x509bundle.Bundle, err error, now time.Time) *peerError {
	if ce, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ce.Reason == x509.Expired {
		return &peerError{reason: ReasonExpiredCertificate, detail: "the endpoint's certificate " + validity(ce.Cert, now),
			fix: "the partner's server must renew its X509-SVID; if the dates look wrong, check the clocks on both sides", err: err}
	}
	if auth := signingAuthority(chain, trust); auth != nil && !now.Before(auth.NotAfter) {
		return &peerError{reason: ReasonExpiredCertificate, detail: "the authority that signed the endpoint's X509-SVID " + validity(auth, now),
			fix: staleBundleFix(trust.TrustDomain()), err: err}
	}
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return unknownAuthority(chain, trust, err)
	}
	return invalidSVID(err)
}

// signingAuthority returns the authority of trust that signed the top of
// chain, by key ID.
func signingAuthority(chain []*x509.Certificate, trust *x509bundle.Bundle) *x509.Certificate {
	akid := chain[len(chain)-1].AuthorityKeyId
	for _, auth := range trust.X509Authorities() {
		if len(akid) > 0 && bytes.Equal(auth.SubjectKeyId, akid) {
			return auth
		}
	}
	return nil
}

func unknownAuthority(chain []*x509.Certificate, trust *x509bundle.Bundle, err error) *peerError {
	ours := make([]string, 0, len(trust.X509Authorities()))
	for _, auth := range trust.X509Authorities() {
		ours = append(ours, hex.EncodeToString(auth.SubjectKeyId))
	}
	held := "we hold no X.509 authority of it"
	if len(ours) > 0 {
		held = "not one of the authorities we hold (" + strings.Join(ours, ", ") + ")"
	}
	return &peerError{
		reason: ReasonUnknownAuthority,
		detail: fmt.Sprintf("the endpoint's X509-SVID does not chain to the bundle we hold for %q: it is signed by authority %s, %s",
			trust.TrustDomain().Name(), hex.EncodeToString(chain[len(chain)-1].AuthorityKeyId), held),
		fix: staleBundleFix(trust.TrustDomain()),
		err: err,
	}
}

func staleBundleFix(td spiffeid.TrustDomain) string {
	return fmt.Sprintf("the partner probably rotated its CA past the bundle we hold (a stale bootstrap bundle): get the partner's current bundle (treaty bundle show -format spiffe on their side) and run treaty bundle set -id spiffe://%s -path <file> -format spiffe", td.Name())
}

func (a *attempt) noBootstrapBundle(td spiffeid.TrustDomain) *FetchError {
	return a.fail(ReasonNoBootstrapBundle, fmt.Sprintf("we hold no bundle of %q to authenticate the endpoint's X509-SVID", td.Name()),
		fmt.Sprintf("https_spiffe needs the partner's bundle once: run `treaty bundle set -id spiffe://%s -path <file> -format spiffe` with the bundle the partner gives you (treaty bundle show -format spiffe on their side)", td.Name()), nil)
}

// redirected reports a redirect with its target.
func (a *attempt) redirected(resp *http.Response) error {
	where, plain, userinfo := "nowhere (no Location header)", false, false
	if loc, err := resp.Location(); err == nil {
		where, plain, userinfo = fmt.Sprintf("%q", RedactURL(loc)), loc.Scheme == "http", loc.User != nil
	}
	detail := fmt.Sprintf("the endpoint redirects (%d %s) to %s", resp.StatusCode, http.StatusText(resp.StatusCode), where)
	switch {
	case plain:
		detail += ", a plain-HTTP URL that cannot be authenticated"
	case userinfo:
		detail += ", a URL with a user name or password, which a bundle endpoint URL must not hold (SPIFFE Federation standard, sections 5.2.1.3 and 5.2.2.3)"
	}
	return a.fail(ReasonRedirect, detail,
		"treaty follows at most 3 redirects, and only to https URLs that it can authenticate: configure the URL where the partner really serves its bundle, or fix the redirect in the proxy in front of it", nil)
}

// snippetBytes is how much of an error response is read to describe it.
const snippetBytes = 4 << 10

func (a *attempt) badStatus(resp *http.Response) error {
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, snippetBytes)) // only to describe the page
	detail := fmt.Sprintf("the endpoint answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	if isHTML(resp.Header.Get("Content-Type"), snippet) {
		detail += " with an HTML page" + titled(snippet) + ","
	}
	return a.fail(ReasonHTTPStatus, detail+" instead of 200 and the bundle", statusFix(resp.StatusCode), nil)
}

func statusFix(code int) string {
	switch {
	case code == http.StatusNotFound:
		return "check the URL path: an endpoint serves its bundle at one exact path (treaty and SPIRE serve it at /)"
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return "a bundle endpoint must not require client authentication (SPIFFE Federation, sections 5.2.1.3 and 5.2.2.3): ask the partner to open it, or to fix the access rule of the proxy in front of it"
	case code == http.StatusTooManyRequests:
		return "the endpoint rate-limits us: ask the partner to raise its limit for this client"
	case code >= 500:
		return "the partner's endpoint, or a proxy in front of it, is failing: ask the partner to check its bundle endpoint"
	}
	return "a bundle endpoint answers GET with 200 and the bundle: check the URL"
}

func (a *attempt) htmlPage(body []byte) error {
	return a.fail(ReasonHTMLPage, "the endpoint answered with an HTML page"+titled(body)+", not a SPIFFE bundle: a proxy error or login page",
		"check that the URL points at the bundle endpoint itself and that no proxy, SSO gateway or captive portal answers in its place", nil)
}

func (a *attempt) tooLarge(declared int64) error {
	detail := fmt.Sprintf("the response is larger than the %d-byte limit", a.cfg.MaxBodyBytes)
	if declared >= 0 {
		detail = fmt.Sprintf("the response declares %d bytes, over the %d-byte limit", declared, a.cfg.MaxBodyBytes)
	}
	return a.fail(ReasonBodyTooLarge, detail, "a SPIFFE bundle is a few kilobytes: check that the URL points at the bundle endpoint", nil)
}

func (a *attempt) invalidBundle(err error) error {
	return a.fail(ReasonInvalidBundle, err.Error(),
		"the partner must fix what its endpoint serves (compare with treaty bundle show -format spiffe on their side); if it is another trust domain's bundle, correct the URL", err)
}

// effectivelyEmpty refuses a document whose every entry is ignored. The
// standard (SPIFFE Trust Domain and Bundle §4.1.3) treats it like an empty
// key set, which revokes every authority of the partner; but a partner that
// means to revoke everything publishes "keys": [], and a set of entries
// that are all broken is far more likely a mistake (an encoding bug, a
// botched rotation, a proxy rewriting the body) than a revocation. So the
// last good bundle stays, and the failure says loudly what was wrong.
func (a *attempt) effectivelyEmpty(res *bundle.Result) error {
	reasons := make([]string, len(res.Ignored))
	for i, ig := range res.Ignored {
		reasons[i] = ig.Message
	}
	return a.fail(ReasonEffectivelyEmpty,
		fmt.Sprintf("every one of the %d entries of the bundle is ignored, so it is effectively empty and would revoke every authority of %q (%s); keeping the last good bundle",
			res.Entries, a.rel.TrustDomain.Name(), strings.Join(reasons, "; ")),
		`the partner must fix the entries its endpoint serves (treaty bundle validate on the document shows each problem and its fix); to revoke everything on purpose a trust domain publishes "keys": []`, nil)
}

// isHTML reports whether a response is an HTML page, by its content type
// or its first bytes.
func isHTML(contentType string, body []byte) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && (mt == "text/html" || mt == "application/xhtml+xml") {
		return true
	}
	head := asciiLower(bytes.TrimSpace(body[:min(len(body), 512)]))
	return bytes.HasPrefix(head, []byte("<!doctype html")) || bytes.HasPrefix(head, []byte("<html"))
}

// titled returns ` titled "…"` for a page with a title, or "".
func titled(page []byte) string {
	lower := asciiLower(page)
	start := bytes.Index(lower, []byte("<title>"))
	if start < 0 {
		return ""
	}
	start += len("<title>")
	end := bytes.Index(lower[start:], []byte("</title>"))
	if end < 0 {
		return ""
	}
	title := []rune(strings.Join(strings.Fields(string(page[start:start+end])), " "))
	if len(title) > 80 {
		title = append(title[:80], '…')
	}
	return fmt.Sprintf(" titled %q", string(title))
}

// asciiLower lower-cases ASCII letters only, so that byte offsets stay
// valid for the original.
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// hostPort is the URL's host with its port, 443 when implicit.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), "443")
}
