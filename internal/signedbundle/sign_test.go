package signedbundle_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/signedbundle"
	"github.com/treatyhq/treaty/internal/testpki"
)

// TestSignAlgorithms signs with every kind of key a JWT authority may have
// and checks that each file names the algorithm its key implies (RFC 7518
// §3.1) and verifies as a pinned first file.
func TestSignAlgorithms(t *testing.T) {
	ec := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		require.NoError(t, err)
		return k
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		signer crypto.Signer
		alg    jose.SignatureAlgorithm
	}{
		{"ok/P-256", ec(elliptic.P256()), jose.ES256},
		{"ok/P-384", ec(elliptic.P384()), jose.ES384},
		{"ok/P-521", ec(elliptic.P521()), jose.ES512},
		{"ok/RSA", rsaKey, jose.RS256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := signedbundle.Key{ID: "k", Signer: tc.signer}
			b, file := publish(t, 3, []signedbundle.Key{k}, k)
			require.Equal(t, tc.alg, algOf(t, file))
			fp, err := bundle.Fingerprint(b)
			require.NoError(t, err)
			d, kid, err := accept(t, file, nil, fp)
			require.NoError(t, err)
			require.Equal(t, signedbundle.Newer, d)
			require.Equal(t, "k", kid)
		})
	}
}

func TestSignRefuses(t *testing.T) {
	a := newKey(t, "a")
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	held, _ := publish(t, 1, []signedbundle.Key{a})
	doc := mustMarshal(t, held)
	for _, tc := range []struct {
		name, want string
		doc        []byte
		keys       []signedbundle.Key
	}{
		{"fail/no keys", "no JWT authority to sign with", doc, nil},
		{"fail/not JSON", "not compact JSON", []byte(`{"keys":`), []signedbundle.Key{a}},
		{"fail/surrounding whitespace", "not compact JSON", append([]byte(" "), doc...), []signedbundle.Key{a}},
		{"fail/P-224 key", `sign bundle with "p224": unsupported curve P-224`, doc, []signedbundle.Key{a, {ID: "p224", Signer: p224}}},
		{"fail/Ed25519 key", `sign bundle with "ed": unsupported key type ed25519.PublicKey`, doc, []signedbundle.Key{{ID: "ed", Signer: ed}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, err := signedbundle.Sign(tc.doc, td, 1, tc.keys)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, file)
		})
	}
}

// TestVerifyPicksTheHeldKey checks that a file signed by several keys
// verifies with whichever the holder has, whatever its place, and that a
// key ID the holder knows is not enough: the key behind it must match.
func TestVerifyPicksTheHeldKey(t *testing.T) {
	a, b, impostor := newKey(t, "a"), newKey(t, "b"), newKey(t, "b")
	heldB, _ := publish(t, 1, []signedbundle.Key{b})
	_, file := publish(t, 2, []signedbundle.Key{a, b}, a, b)

	d, kid, err := accept(t, file, heldB, "")
	require.NoError(t, err)
	require.Equal(t, signedbundle.Newer, d)
	require.Equal(t, "b", kid, "the second signature verified")

	heldImpostor, _ := publish(t, 1, []signedbundle.Key{impostor})
	_, _, err = accept(t, file, heldImpostor, "")
	require.ErrorIs(t, err, signedbundle.ErrUntrusted)
	require.ErrorContains(t, err, "signed by a, b; held: b")
}

// TestVerifyWithoutJWTAuthorities checks that a bundle held with X.509
// authorities only verifies no file, and says so.
func TestVerifyWithoutJWTAuthorities(t *testing.T) {
	a := newKey(t, "a")
	_, file := publish(t, 2, []signedbundle.Key{a}, a)
	held := spiffebundle.New(td)
	held.AddX509Authority(testpki.CACert(t, "spiffe://alpha.test"))
	held.SetSequenceNumber(1)
	_, _, err := accept(t, file, held, "")
	require.ErrorIs(t, err, signedbundle.ErrUntrusted)
	require.ErrorContains(t, err, "held: no JWT authority")
}

// TestPinnedFirstSignedByOutsider checks that a first file with the pinned
// bundle is still refused when no key of that bundle signed it: the pin
// names the bundle, and the bundle's own keys must vouch for the file.
func TestPinnedFirstSignedByOutsider(t *testing.T) {
	a, outsider := newKey(t, "a"), newKey(t, "outsider")
	b, file := publish(t, 1, []signedbundle.Key{a}, outsider)
	fp, err := bundle.Fingerprint(b)
	require.NoError(t, err)
	_, _, err = accept(t, file, nil, fp)
	require.ErrorIs(t, err, signedbundle.ErrUntrusted)

	_, _, err = accept(t, file, nil, "sha256:"+colons(fp))
	require.ErrorIs(t, err, signedbundle.ErrUntrusted, "the pin matched in its colon spelling too")
}

// TestAcceptSameSequenceOtherHint checks that a file at the held sequence
// must hold exactly the held bundle: a changed refresh hint alone is a
// change that needs a higher sequence.
func TestAcceptSameSequenceOtherHint(t *testing.T) {
	a := newKey(t, "a")
	held, _ := publish(t, 4, []signedbundle.Key{a})
	other := held.Clone()
	other.SetRefreshHint(time.Hour)
	doc, err := bundle.Marshal(other)
	require.NoError(t, err)
	file, err := signedbundle.Sign(doc, td, 4, []signedbundle.Key{a})
	require.NoError(t, err)
	_, _, err = accept(t, file, held, "")
	require.ErrorContains(t, err, "its keys differ")
}

func algOf(t *testing.T, file []byte) jose.SignatureAlgorithm {
	t.Helper()
	var f struct{ Signatures []struct{ Protected string } }
	require.NoError(t, json.Unmarshal(file, &f))
	raw, err := base64.RawURLEncoding.DecodeString(f.Signatures[0].Protected)
	require.NoError(t, err)
	var h struct{ Alg string }
	require.NoError(t, json.Unmarshal(raw, &h))
	return jose.SignatureAlgorithm(h.Alg)
}

// colons spells a hex fingerprint as some tools print one: upper case, in
// pairs separated by colons.
func colons(hex string) string {
	var pairs []string
	for i := 0; i < len(hex); i += 2 {
		pairs = append(pairs, strings.ToUpper(hex[i:i+2]))
	}
	return strings.Join(pairs, ":")
}
