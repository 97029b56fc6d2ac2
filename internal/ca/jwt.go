package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/treatyhq/treaty/internal/datastore"
)

// JWTSVIDParams describes a JWT-SVID to sign.
type JWTSVIDParams struct {
	ID       spiffeid.ID
	Audience []string
	// TTL is the requested lifetime; zero means the configured JWTSVIDTTL.
	// The token never outlives the key that signs it.
	TTL time.Duration
}

// SignJWTSVID issues a JWT-SVID (SPIFFE JWT-SVID standard, sections 2 and
// 3: "sub" is the SPIFFE ID, "aud" at least one audience, "exp" required,
// "kid" in the header) signed by the active JWT key. It returns the compact
// token and its expiry.
func (c *CA) SignJWTSVID(p JWTSVIDParams) (string, time.Time, error) {
	if p.ID.IsZero() || p.ID.TrustDomain() != c.cfg.TrustDomain {
		return "", time.Time{}, fmt.Errorf("SPIFFE ID %q is not in trust domain %q", p.ID, c.cfg.TrustDomain.Name())
	}
	if len(p.Audience) == 0 {
		return "", time.Time{}, errors.New("a JWT-SVID needs at least one audience")
	}
	c.mu.Lock()
	active := c.activeAuthority(datastore.KindJWT)
	now := c.cfg.Now()
	c.mu.Unlock()
	if active == nil {
		return "", time.Time{}, fmt.Errorf("no active JWT key: %w", ErrFailedPrecondition)
	}
	ttl := p.TTL
	if ttl <= 0 {
		ttl = c.cfg.JWTSVIDTTL
	}
	expiry := now.Add(ttl)
	if expiry.After(active.NotAfter) {
		expiry = active.NotAfter
	}
	signer, err := jwtSigner(active.signer, active.ID)
	if err != nil {
		return "", time.Time{}, err
	}
	claims := jwt.Claims{
		Subject:  p.ID.String(),
		Audience: jwt.Audience(p.Audience),
		Expiry:   jwt.NewNumericDate(expiry.Truncate(time.Second)),
		IssuedAt: jwt.NewNumericDate(now),
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign JWT-SVID for %q: %w", p.ID, err)
	}
	return token, expiry.Truncate(time.Second), nil
}

// jwtSigner picks the JOSE algorithm that matches the key.
func jwtSigner(key crypto.Signer, kid string) (jose.Signer, error) {
	var alg jose.SignatureAlgorithm
	switch pub := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			alg = jose.ES256
		case elliptic.P384():
			alg = jose.ES384
		default:
			return nil, fmt.Errorf("JWT key: unsupported curve %s", pub.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("JWT key: unsupported key type %T", pub)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("JWT signer: %w", err)
	}
	return signer, nil
}
