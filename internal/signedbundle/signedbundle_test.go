package signedbundle_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/signedbundle"
)

var td = spiffeid.RequireTrustDomainFromString("alpha.test")

func newKey(t testing.TB, id string) signedbundle.Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return signedbundle.Key{ID: id, Signer: k}
}

// publish builds the bundle of keys with sequence seq and signs it with
// signers.
func publish(t testing.TB, seq uint64, keys []signedbundle.Key, signers ...signedbundle.Key) (*spiffebundle.Bundle, []byte) {
	t.Helper()
	b := spiffebundle.New(td)
	for _, k := range keys {
		require.NoError(t, b.AddJWTAuthority(k.ID, k.Signer.Public()))
	}
	b.SetRefreshHint(5 * time.Minute)
	b.SetSequenceNumber(seq)
	doc, err := bundle.Marshal(b)
	require.NoError(t, err)
	if len(signers) == 0 {
		return b, nil
	}
	file, err := signedbundle.Sign(doc, td, seq, signers)
	require.NoError(t, err)
	return b, file
}

func accept(t *testing.T, file []byte, held *spiffebundle.Bundle, pin string) (signedbundle.Decision, string, error) {
	t.Helper()
	s, err := signedbundle.Parse(file)
	if err != nil {
		return 0, "", err
	}
	return s.Accept(held, pin)
}

func TestRoundTrip(t *testing.T) {
	a, b := newKey(t, "a"), newKey(t, "b")
	held, _ := publish(t, 1, []signedbundle.Key{a})
	next, file := publish(t, 2, []signedbundle.Key{a, b}, a, b)

	s, err := signedbundle.Parse(file)
	require.NoError(t, err)
	require.Equal(t, td, s.TrustDomain)
	require.Equal(t, uint64(2), s.Sequence)
	require.True(t, s.Bundle.Equal(next))
	doc, err := bundle.Marshal(next)
	require.NoError(t, err)
	require.Equal(t, doc, s.Document, "the exact bytes served are the bytes signed")

	d, kid, err := s.Accept(held, "")
	require.NoError(t, err)
	require.Equal(t, signedbundle.Newer, d)
	require.Equal(t, "a", kid)

	d, _, err = s.Accept(next, "")
	require.NoError(t, err)
	require.Equal(t, signedbundle.Unchanged, d)
}

func TestRefused(t *testing.T) {
	a, b, other := newKey(t, "a"), newKey(t, "b"), newKey(t, "a")
	held, _ := publish(t, 5, []signedbundle.Key{a})
	_, good := publish(t, 6, []signedbundle.Key{a, b}, a)
	_, older := publish(t, 4, []signedbundle.Key{a, b}, a)
	_, forged := publish(t, 6, []signedbundle.Key{a, b}, other)
	_, fork := publish(t, 5, []signedbundle.Key{a, b}, a)
	for _, tc := range []struct {
		name, want string
		file       []byte
	}{
		{"fail/tampered payload", "not signed by a JWT authority", []byte(strings.Replace(string(good), `"spiffe_refresh_hint":300`, `"spiffe_refresh_hint":301`, 1))},
		{"fail/tampered header", "not signed by a JWT authority", retitle(t, good, 7)},
		{"fail/wrong key", "not signed by a JWT authority", forged},
		{"fail/replayed older sequence", "older than the bundle held (5)", older},
		{"fail/same sequence other keys", "its keys differ", fork},
		{"fail/trust domain in header", "the file is for beta.test", renamed(t, good)},
		{"fail/plain bundle", "not a signed bundle", mustMarshal(t, held)},
		{"fail/unprotected header", "unprotected header", withUnprotected(t, good)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := accept(t, tc.file, held, "")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestPinnedFirst(t *testing.T) {
	a := newKey(t, "a")
	first, file := publish(t, 1, []signedbundle.Key{a}, a)
	fp, err := bundle.Fingerprint(first)
	require.NoError(t, err)

	_, _, err = accept(t, file, nil, "")
	require.ErrorIs(t, err, signedbundle.ErrNoAnchor)
	_, _, err = accept(t, file, nil, strings.Repeat("0", 64))
	require.ErrorContains(t, err, "is not the pinned")
	d, kid, err := accept(t, file, nil, "sha256:"+strings.ToUpper(fp))
	require.NoError(t, err)
	require.Equal(t, signedbundle.Newer, d)
	require.Equal(t, "a", kid)
}

// TestChainAcrossRotations follows a trust domain through two rotations of
// its JWT authority, each bundle signed by every key it publishes: a holder
// verifies each bundle with the one before, and one that missed a bundle
// still verifies the next while a key it holds is published.
func TestChainAcrossRotations(t *testing.T) {
	a, b, c := newKey(t, "a"), newKey(t, "b"), newKey(t, "c")
	b1, _ := publish(t, 1, []signedbundle.Key{a}, a)
	b2, f2 := publish(t, 2, []signedbundle.Key{a, b}, a, b) // b prepared
	b3, f3 := publish(t, 3, []signedbundle.Key{a, b}, a, b) // b active, a old
	b4, f4 := publish(t, 4, []signedbundle.Key{b, c}, b, c) // a removed, c prepared
	_, f5 := publish(t, 5, []signedbundle.Key{b, c}, b, c)  // c active
	b6, f6 := publish(t, 6, []signedbundle.Key{c}, c)       // b removed

	held := b1
	for i, f := range [][]byte{f2, f3, f4, f5, f6} {
		d, _, err := accept(t, f, held, "")
		require.NoError(t, err, "bundle %d", i+2)
		require.Equal(t, signedbundle.Newer, d)
		s, err := signedbundle.Parse(f)
		require.NoError(t, err)
		held = s.Bundle
	}
	require.True(t, held.Equal(b6))

	_, _, err := accept(t, f3, b1, "")
	require.NoError(t, err, "b1's holder skipped b2: a still signs b3")
	_, _, err = accept(t, f4, b2, "")
	require.NoError(t, err, "b2's holder skipped b3: b signs b4")
	_, _, err = accept(t, f6, b3, "")
	require.ErrorIs(t, err, signedbundle.ErrUntrusted, "b3's holder missed every bundle with c: it needs b4 or b5 first")
	_, _, err = accept(t, f6, b4, "")
	require.NoError(t, err)
}

// TestNotAJWTSVID checks both directions of the confusion between a signed
// bundle and a JWT-SVID signed by the same JWT authority.
func TestNotAJWTSVID(t *testing.T) {
	a := newKey(t, "a")
	held, file := publish(t, 1, []signedbundle.Key{a}, a)
	jwtBundle := jwtbundle.FromJWTAuthorities(td, held.JWTAuthorities())

	t.Run("fail/signed bundle as a JWT-SVID", func(t *testing.T) {
		var f struct {
			Bundle     json.RawMessage `json:"spiffe_bundle"`
			Signatures []struct{ Protected, Signature string }
		}
		require.NoError(t, json.Unmarshal(file, &f))
		sig := f.Signatures[0]
		for _, token := range []string{
			sig.Protected + "." + string(f.Bundle) + "." + sig.Signature,
			sig.Protected + "." + base64.RawURLEncoding.EncodeToString(f.Bundle) + "." + sig.Signature,
			sig.Protected + ".." + sig.Signature,
		} {
			_, err := jwtsvid.ParseAndValidate(token, jwtBundle, []string{"anything"})
			require.Error(t, err)
		}
		// A verifier that ignores typ still finds no SPIFFE ID in it.
		tok, err := jwt.ParseSigned(sig.Protected+"."+string(f.Bundle)+"."+sig.Signature, []jose.SignatureAlgorithm{jose.ES256})
		if err == nil {
			var claims jwt.Claims
			if err := tok.Claims(a.Signer.Public(), &claims); err == nil {
				require.Empty(t, claims.Subject)
				require.Nil(t, claims.Expiry)
			}
		}
	})
	t.Run("fail/JWT-SVID as a signed bundle", func(t *testing.T) {
		token := jwtSVID(t, a)
		_, err := signedbundle.Parse([]byte(token))
		require.ErrorContains(t, err, "not a signed bundle")
		parts := strings.Split(token, ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		require.NoError(t, err)
		wrapped := `{"spiffe_bundle":` + string(payload) + `,"signatures":[{"protected":"` + parts[0] + `","signature":"` + parts[2] + `"}]}`
		_, err = signedbundle.Parse([]byte(wrapped))
		require.ErrorContains(t, err, `typ "JWT" is a JWT's`)
	})
}

func jwtSVID(t *testing.T, k signedbundle.Key) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.Signer},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID))
	require.NoError(t, err)
	token, err := jwt.Signed(signer).Claims(jwt.Claims{Subject: td.ID().String() + "/w", Audience: jwt.Audience{"x"},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	require.NoError(t, err)
	_, err = jwtsvid.ParseAndValidate(token, jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{k.ID: k.Signer.Public()}), []string{"x"})
	require.NoError(t, err, "the JWT-SVID itself is valid")
	return token
}

// editHeader rewrites the first signature's protected header with edit,
// leaving its signature as it was.
func editHeader(t *testing.T, file []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var f map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(file, &f))
	var sigs []map[string]any
	require.NoError(t, json.Unmarshal(f["signatures"], &sigs))
	raw, err := base64.RawURLEncoding.DecodeString(sigs[0]["protected"].(string))
	require.NoError(t, err)
	var h map[string]any
	require.NoError(t, json.Unmarshal(raw, &h))
	edit(h)
	raw, err = json.Marshal(h)
	require.NoError(t, err)
	sigs[0]["protected"] = base64.RawURLEncoding.EncodeToString(raw)
	f["signatures"], err = json.Marshal(sigs)
	require.NoError(t, err)
	out, err := json.Marshal(f)
	require.NoError(t, err)
	return out
}

// retitle raises the signed sequence in the header and in the document.
func retitle(t *testing.T, file []byte, seq int) []byte {
	t.Helper()
	out := editHeader(t, file, func(h map[string]any) { h["spiffe_sequence"] = seq })
	return []byte(strings.Replace(string(out), `"spiffe_sequence":6`, `"spiffe_sequence":7`, 1))
}

func renamed(t *testing.T, file []byte) []byte {
	return editHeader(t, file, func(h map[string]any) { h["spiffe_trust_domain"] = "beta.test" })
}

func withUnprotected(t *testing.T, file []byte) []byte {
	t.Helper()
	return []byte(strings.Replace(string(file), `"signature":`, `"header":{"kid":"a"},"signature":`, 1))
}

func mustMarshal(t *testing.T, b *spiffebundle.Bundle) []byte {
	t.Helper()
	raw, err := bundle.Marshal(b)
	require.NoError(t, err)
	return raw
}
