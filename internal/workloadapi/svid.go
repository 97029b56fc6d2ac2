package workloadapi

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/treatyhq/treaty/internal/ca"
	"github.com/treatyhq/treaty/internal/datastore"
)

// x509SVID is an issued X509-SVID with its key, ready to send.
type x509SVID struct {
	chainDER []byte // leaf first, DER concatenated
	keyDER   []byte // PKCS#8
	renewAt  time.Time
}

// jwtSVID is an issued JWT-SVID.
type jwtSVID struct {
	token   string
	renewAt time.Time
}

// svidKey names a cached SVID: an entry at a revision, signed in one CA
// generation, and for JWT-SVIDs an audience set.
type svidKey struct {
	entryID      string
	revision     int64
	caGeneration uint64
	audience     string
}

// svidCache issues SVIDs on first use and reuses them until half their
// lifetime has passed (SPIFFE Workload API: workloads get a fresh SVID
// well before the old one expires). Each SVID is shared by every stream of
// every workload matching the entry.
type svidCache struct {
	ca  Authority
	now func() time.Time
	// issued is poked when a new SVID is cached so the server can set its
	// renewal timer.
	issued chan struct{}

	mu   sync.Mutex
	x509 map[svidKey]*x509SVID
	jwt  map[svidKey]*jwtSVID
	// x509Issued and jwtIssued count the SVIDs signed (under mu).
	x509Issued, jwtIssued uint64
}

func newSVIDCache(authority Authority, now func() time.Time) *svidCache {
	return &svidCache{ca: authority, now: now, issued: make(chan struct{}, 1),
		x509: map[svidKey]*x509SVID{}, jwt: map[svidKey]*jwtSVID{}}
}

// x509For returns the entry's X509-SVID, issuing one if none is cached or
// the cached one is due for renewal.
func (c *svidCache) x509For(e datastore.Entry, caGeneration uint64) (*x509SVID, error) {
	key := svidKey{entryID: e.ID, revision: e.RevisionNumber, caGeneration: caGeneration}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.x509[key]; s != nil && c.now().Before(s.renewAt) {
		return s, nil
	}
	now := c.now()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate SVID key: %w", err)
	}
	chain, err := c.ca.SignX509SVID(ca.X509SVIDParams{ID: e.SPIFFEID, PublicKey: priv.Public(), TTL: e.X509SVIDTTL, DNSNames: e.DNSNames})
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode SVID key: %w", err)
	}
	s := &x509SVID{keyDER: keyDER, renewAt: halfLife(now, chain[0].NotAfter)}
	for _, cert := range chain {
		s.chainDER = append(s.chainDER, cert.Raw...)
	}
	c.x509[key] = s
	c.x509Issued++
	c.poke()
	return s, nil
}

// jwtFor returns a JWT-SVID for the entry and audience.
func (c *svidCache) jwtFor(e datastore.Entry, caGeneration uint64, audience []string) (*jwtSVID, error) {
	aud := slices.Clone(audience)
	slices.Sort(aud)
	key := svidKey{entryID: e.ID, revision: e.RevisionNumber, caGeneration: caGeneration, audience: strings.Join(aud, "\x00")}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.jwt[key]; s != nil && c.now().Before(s.renewAt) {
		return s, nil
	}
	now := c.now()
	token, expiry, err := c.ca.SignJWTSVID(ca.JWTSVIDParams{ID: e.SPIFFEID, Audience: audience, TTL: e.JWTSVIDTTL})
	if err != nil {
		return nil, err
	}
	c.jwtIssued++
	s := &jwtSVID{token: token, renewAt: halfLife(now, expiry)}
	if len(c.jwt) >= maxJWTCache {
		c.jwt = map[svidKey]*jwtSVID{}
	}
	c.jwt[key] = s
	return s, nil
}

// maxJWTCache bounds cached JWT-SVIDs: audiences come from callers.
const maxJWTCache = 10000

func (c *svidCache) poke() {
	select {
	case c.issued <- struct{}{}:
	default:
	}
}

// expire drops X509-SVIDs due for renewal (the next request reissues
// them) and returns when the earliest remaining one is due, or zero.
func (c *svidCache) expire() time.Time {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for k, s := range c.x509 {
		if !now.Before(s.renewAt) {
			delete(c.x509, k)
			continue
		}
		if next.IsZero() || s.renewAt.Before(next) {
			next = s.renewAt
		}
	}
	for k, s := range c.jwt {
		if !now.Before(s.renewAt) {
			delete(c.jwt, k)
		}
	}
	return next
}

// forget drops SVIDs whose key is not wanted any more (an entry changed
// or the CA rotated).
func (c *svidCache) forget(keep func(svidKey) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.x509 {
		if !keep(k) {
			delete(c.x509, k)
		}
	}
	for k := range c.jwt {
		if !keep(k) {
			delete(c.jwt, k)
		}
	}
}

// halfLife is halfway from issue to expiry. The certificate's NotBefore
// is backdated for clock skew, so the issue time is used instead.
func halfLife(issued, notAfter time.Time) time.Time {
	return issued.Add(notAfter.Sub(issued) / 2)
}
