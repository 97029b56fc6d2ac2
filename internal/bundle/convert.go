package bundle

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Convert re-encodes a bundle between the SPIFFE format, PEM certificates
// and a plain JWK Set of JWT keys (RFC 7517, what OIDC verifiers take). It
// returns the new document and notes on what the target format cannot
// carry.
func Convert(td spiffeid.TrustDomain, data []byte, from, to string) ([]byte, []string, error) {
	b, notes, err := decodeAs(td, data, from)
	if err != nil {
		return nil, nil, err
	}
	switch to {
	case FormatSPIFFE:
		out, err := MarshalIndent(b)
		return out, notes, err
	case FormatPEM:
		if n := len(b.JWTAuthorities()); n > 0 {
			notes = append(notes, fmt.Sprintf("PEM holds certificates only: %d JWT key(s) dropped", n))
		}
		if _, ok := b.RefreshHint(); ok {
			notes = append(notes, "PEM has no refresh hint or sequence: dropped")
		}
		if len(b.X509Authorities()) == 0 {
			return nil, notes, fmt.Errorf("the bundle has no X.509 authorities to write as PEM")
		}
		var sb strings.Builder
		for _, c := range b.X509Authorities() {
			sb.WriteString(string(pemCert(c.Raw)))
		}
		return []byte(sb.String()), notes, nil
	case FormatJWKS:
		if n := len(b.X509Authorities()); n > 0 {
			notes = append(notes, fmt.Sprintf("a plain JWK Set carries JWT keys only: %d X.509 authorit(ies) dropped", n))
		}
		out, err := jwtbundle.FromJWTAuthorities(td, b.JWTAuthorities()).Marshal()
		if err != nil {
			return nil, notes, err
		}
		var indented json.RawMessage = out
		pretty, err := json.MarshalIndent(indented, "", "  ")
		return append(pretty, '\n'), notes, err
	}
	return nil, nil, fmt.Errorf("unknown target format %q: use spiffe, pem or jwks", to)
}

func decodeAs(td spiffeid.TrustDomain, data []byte, from string) (*spiffebundle.Bundle, []string, error) {
	switch from {
	case FormatSPIFFE:
		res, err := Parse(td, data, Options{})
		if err != nil {
			return nil, nil, err
		}
		return res.Bundle, res.Warnings, nil
	case FormatPEM:
		res, err := ParsePEM(td, data, Options{})
		if err != nil {
			return nil, nil, err
		}
		return res.Bundle, res.Warnings, nil
	case FormatJWKS:
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, nil, fmt.Errorf("not a JWK Set: %s", jsonError(data, err))
		}
		b := spiffebundle.New(td)
		for i, k := range set.Keys {
			if k.KeyID == "" {
				return nil, nil, fmt.Errorf("keys[%d] has no kid: JWT authorities need one", i)
			}
			if !k.IsPublic() {
				return nil, nil, fmt.Errorf("keys[%d] (kid %q) is a private key: a bundle holds public keys only, and this one should be considered compromised", i, k.KeyID)
			}
			if err := b.AddJWTAuthority(k.KeyID, k.Key); err != nil {
				return nil, nil, fmt.Errorf("keys[%d]: %w", i, err)
			}
		}
		return b, nil, nil
	}
	return nil, nil, fmt.Errorf("unknown source format %q: use spiffe, pem or jwks", from)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
