package invite

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/federation"
	"github.com/treatyhq/treaty/internal/profile"
)

// Fetcher fetches and authenticates a partner's bundle, as federation does.
type Fetcher interface {
	Fetch(ctx context.Context, rel federation.Relationship, endpoint *url.URL, trust *spiffebundle.Bundle) (*bundle.Result, error)
}

// ErrFingerprint means the endpoint serves another bundle than the one the
// invite was made for.
var ErrFingerprint = errors.New("the bundle the endpoint serves is not the one the invite was made for")

// Verified is a relationship ready to store, with the authenticated bundle.
type Verified struct {
	Relationship federation.Relationship
	Bundle       *spiffebundle.Bundle
}

// Verify fetches the inviter's bundle and accepts it only if it matches
// the invite's fingerprint. For https_spiffe without an embedded bundle
// this is trust on first use pinned to the fingerprint: the bundle is read
// without authenticating the endpoint, checked against the fingerprint,
// and then used to authenticate the endpoint's X509-SVID like every later
// refresh.
func Verify(ctx context.Context, t Token, f Fetcher) (*Verified, error) {
	rel, err := relationship(t)
	if err != nil {
		return nil, err
	}
	u := rel.BundleEndpointURLs[0]
	var trust *spiffebundle.Bundle
	if rel.Profile == profile.HTTPSSPIFFE {
		if trust, err = pinned(ctx, t, rel.TrustDomain, u); err != nil {
			return nil, err
		}
	}
	res, err := f.Fetch(ctx, rel, u, trust)
	if err != nil {
		return nil, fmt.Errorf("fetch %s's bundle: %w", t.TrustDomain, err)
	}
	if err := matches(t, res.Bundle); err != nil {
		return nil, err
	}
	return &Verified{Relationship: rel, Bundle: res.Bundle}, nil
}

// pinned returns the bundle to authenticate an https_spiffe endpoint with:
// the embedded one, or the one the endpoint serves, if either matches the
// fingerprint.
func pinned(ctx context.Context, t Token, td spiffeid.TrustDomain, u *url.URL) (*spiffebundle.Bundle, error) {
	if len(t.Bundle) > 0 {
		res, err := bundle.Parse(td, t.Bundle, bundle.Options{RequireKeys: true})
		if err != nil {
			return nil, fmt.Errorf("the bundle in the invite: %w", err)
		}
		return res.Bundle, matches(t, res.Bundle)
	}
	doc, err := getUnauthenticated(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("read %s's bundle from %s: %w", t.TrustDomain, u, err)
	}
	res, err := bundle.Parse(td, doc, bundle.Options{RequireKeys: true})
	if err != nil {
		return nil, fmt.Errorf("%s serves no valid bundle of %s: %w", u, t.TrustDomain, err)
	}
	return res.Bundle, matches(t, res.Bundle)
}

func matches(t Token, b *spiffebundle.Bundle) error {
	fp, err := bundle.Fingerprint(b)
	if err != nil {
		return err
	}
	if fp != t.Fingerprint {
		return fmt.Errorf("%w: %s's bundle changed since the invite was made (a CA rotation?), or the endpoint is not %s's. "+
			"Ask %s for a new invite (fingerprint expected %s…, served %s…)", ErrFingerprint, t.TrustDomain, t.TrustDomain, t.TrustDomain, short(t.Fingerprint), short(fp))
	}
	return nil
}

// short is the start of a fingerprint, enough for a person to compare;
// the invite's may be shorter than a real one.
func short(fp string) string { return fp[:min(len(fp), 12)] }

func relationship(t Token) (federation.Relationship, error) {
	var rel federation.Relationship
	td, err := spiffeid.TrustDomainFromString(t.TrustDomain)
	if err != nil {
		return rel, fmt.Errorf("invite: trust domain %q: %w", t.TrustDomain, err)
	}
	rel.TrustDomain = td
	for _, s := range t.URLs {
		u, err := url.Parse(s)
		if err != nil {
			return rel, fmt.Errorf("invite: bundle endpoint %q is not a URL", federation.RedactRawURL(s))
		}
		if err := federation.CheckEndpointURL(u); err != nil {
			return rel, fmt.Errorf("invite: bundle endpoint %w; ask %s for a new invite", err, t.TrustDomain)
		}
		rel.BundleEndpointURLs = append(rel.BundleEndpointURLs, u)
	}
	if rel.Profile, err = profile.Parse(t.Profile); err != nil {
		return rel, fmt.Errorf("invite: %w", err)
	}
	if t.EndpointSPIFFEID != "" {
		if rel.EndpointSPIFFEID, err = spiffeid.FromString(t.EndpointSPIFFEID); err != nil {
			return rel, fmt.Errorf("invite: endpoint SPIFFE ID: %w", err)
		}
	}
	return rel, rel.Validate()
}

// getUnauthenticated reads a bundle endpoint without checking its
// certificate; the caller checks what it read against a fingerprint.
func getUnauthenticated(ctx context.Context, u *url.URL) ([]byte, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}} //nolint:gosec // pinned by the invite's fingerprint
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}
