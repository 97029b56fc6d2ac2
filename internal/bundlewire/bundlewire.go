// Package bundlewire converts bundles between go-spiffe's type and SPIRE's
// API type (spire-api-sdk types.Bundle), in both directions, for every
// part of treaty that speaks SPIRE's API: the admin API treaty serves, and
// the client of a SPIRE server's admin API in gateway mode.
package bundlewire

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"

	"github.com/treatyhq/treaty/internal/bundle"
)

// TaintChecker tells which local authorities are tainted.
type TaintChecker func(cert *x509.Certificate, kid string) bool

// ToProto converts b to the API type, keeping only the fields in mask (nil
// keeps all). expiry, when set, gives JWT key expiry times by key ID.
func ToProto(b *spiffebundle.Bundle, mask *types.BundleMask, tainted TaintChecker, expiry map[string]time.Time) *types.Bundle {
	out := &types.Bundle{TrustDomain: b.TrustDomain().Name()}
	if mask == nil || mask.X509Authorities {
		out.X509Authorities = []*types.X509Certificate{}
		for _, cert := range b.X509Authorities() {
			out.X509Authorities = append(out.X509Authorities, &types.X509Certificate{
				Asn1: cert.Raw, Tainted: tainted != nil && tainted(cert, ""),
			})
		}
	}
	if mask == nil || mask.JwtAuthorities {
		out.JwtAuthorities = jwtToProto(b, tainted, expiry)
	}
	if hint, ok := b.RefreshHint(); ok && (mask == nil || mask.RefreshHint) {
		out.RefreshHint = int64(hint / time.Second)
	}
	if seq, ok := b.SequenceNumber(); ok && (mask == nil || mask.SequenceNumber) {
		out.SequenceNumber = seq
	}
	return out
}

func jwtToProto(b *spiffebundle.Bundle, tainted TaintChecker, expiry map[string]time.Time) []*types.JWTKey {
	out := []*types.JWTKey{}
	keys := b.JWTAuthorities()
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		der, err := x509.MarshalPKIXPublicKey(keys[kid])
		if err != nil {
			continue // a key go-spiffe accepted always encodes; skip defensively
		}
		k := &types.JWTKey{PublicKey: der, KeyId: kid, Tainted: tainted != nil && tainted(nil, kid)}
		if exp, ok := expiry[kid]; ok {
			k.ExpiresAt = exp.Unix()
		}
		out = append(out, k)
	}
	return out
}

// FromProto converts an API bundle for a federated trust domain, checking
// every authority the way bundle.Parse checks documents, except that a
// problem refuses the whole request: an operator sent it and is there to
// fix it, so nothing is stored half. Problems name the field, e.g.
// "x509_authorities[1]: ...". A certificate naming another trust domain is
// kept, as bundle.Parse keeps it: the bundle belongs to the trust domain
// the request names.
func FromProto(in *types.Bundle) (*spiffebundle.Bundle, error) {
	if err := checkLimits(in); err != nil {
		return nil, err
	}
	td, err := spiffeid.TrustDomainFromString(in.GetTrustDomain())
	if err != nil {
		return nil, fmt.Errorf("trust_domain %q: %w", in.GetTrustDomain(), err)
	}
	b := spiffebundle.New(td)
	for i, c := range in.GetX509Authorities() {
		cert, err := x509.ParseCertificate(c.GetAsn1())
		if err != nil {
			return nil, fmt.Errorf("x509_authorities[%d]: not a valid X.509 certificate: %w", i, err)
		}
		if err := bundle.CheckX509Authority(cert); err != nil {
			return nil, fmt.Errorf("x509_authorities[%d]: %w", i, err)
		}
		b.AddX509Authority(cert)
	}
	if err := addJWTFromProto(b, in.GetJwtAuthorities()); err != nil {
		return nil, err
	}
	if in.GetRefreshHint() < 0 {
		return nil, fmt.Errorf("refresh_hint %d is negative", in.GetRefreshHint())
	}
	b.SetRefreshHint(time.Duration(in.GetRefreshHint()) * time.Second)
	b.SetSequenceNumber(in.GetSequenceNumber())
	return b, nil
}

func addJWTFromProto(b *spiffebundle.Bundle, keys []*types.JWTKey) error {
	for i, k := range keys {
		pub, err := ParseJWTKey(i, k)
		if err != nil {
			return err
		}
		if b.HasJWTAuthority(k.GetKeyId()) {
			return fmt.Errorf("jwt_authorities[%d]: duplicate key_id %q", i, k.GetKeyId())
		}
		if err := b.AddJWTAuthority(k.GetKeyId(), pub); err != nil {
			return fmt.Errorf("jwt_authorities[%d]: %w", i, err)
		}
	}
	return nil
}

// ParseJWTKey reads jwt_authorities[i] of a request: its key ID and PKIX
// public key, with the field named in the error.
func ParseJWTKey(i int, k *types.JWTKey) (crypto.PublicKey, error) {
	if k.GetKeyId() == "" {
		return nil, fmt.Errorf("jwt_authorities[%d]: key_id is required", i)
	}
	pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
	if err != nil {
		return nil, fmt.Errorf("jwt_authorities[%d] (key_id %q): public_key is not a PKIX public key: %w", i, k.GetKeyId(), err)
	}
	return pub, nil
}

// checkLimits refuses a bundle over the limits every bundle document is
// held to (bundle.MaxKeys, bundle.MaxDocumentBytes), before any of it is
// parsed. The message is smaller than the document it stands for (DER
// instead of base64 in JSON), so a bundle refused here would be refused as
// a document too.
func checkLimits(in *types.Bundle) error {
	x509s, jwts := len(in.GetX509Authorities()), len(in.GetJwtAuthorities())
	if x509s+jwts > bundle.MaxKeys {
		return fmt.Errorf("the bundle has %d authorities (%d X.509, %d JWT), over the limit of %d a bundle may hold; nothing was stored",
			x509s+jwts, x509s, jwts, bundle.MaxKeys)
	}
	if size := proto.Size(in); size > bundle.MaxDocumentBytes {
		return fmt.Errorf("the bundle is %d bytes, over the limit of %d (1 MiB) a bundle may take; nothing was stored", size, bundle.MaxDocumentBytes)
	}
	return nil
}
