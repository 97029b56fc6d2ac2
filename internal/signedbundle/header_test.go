package signedbundle_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/signedbundle"
)

// forgedSig is one signature a forger writes by hand: any protected header,
// signed over the unencoded document (RFC 7797 §3) with a P-256 key, so that
// a refusal can only come from the header check, never from a bad signature.
type forgedSig struct {
	header map[string]any
	key    signedbundle.Key
}

// header returns the protected header Sign writes for k, td and seq, with
// edits applied (a nil value deletes the parameter).
func header(k signedbundle.Key, td spiffeid.TrustDomain, seq uint64, edits map[string]any) map[string]any {
	h := map[string]any{
		"alg": "ES256", "kid": k.ID, "typ": signedbundle.Type, "b64": false, "crit": []string{"b64"},
		signedbundle.HeaderTrustDomain: td.Name(), signedbundle.HeaderSequence: seq,
	}
	maps.Copy(h, edits)
	for name, v := range edits {
		if v == nil {
			delete(h, name)
		}
	}
	return h
}

// forge writes a signed bundle file holding doc with the given signatures.
func forge(t *testing.T, doc []byte, sigs ...forgedSig) []byte {
	t.Helper()
	var parts []string
	for _, s := range sigs {
		raw, err := json.Marshal(s.header)
		require.NoError(t, err)
		protected := base64.RawURLEncoding.EncodeToString(raw)
		digest := sha256.Sum256(append([]byte(protected+"."), doc...))
		r, ss, err := ecdsa.Sign(rand.Reader, s.key.Signer.(*ecdsa.PrivateKey), digest[:])
		require.NoError(t, err)
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
		parts = append(parts, fmt.Sprintf(`{"protected":%q,"signature":%q}`, protected, base64.RawURLEncoding.EncodeToString(sig)))
	}
	return []byte(`{"spiffe_bundle":` + string(doc) + `,"signatures":[` + strings.Join(parts, ",") + `]}`)
}

// TestForgedHeaders hands Parse files whose signatures are sound but whose
// protected headers are not a signed bundle's: each must be refused for
// its header, with the reason. The first case shows that forge's files
// verify when the header is right.
func TestForgedHeaders(t *testing.T) {
	a := newKey(t, "a")
	held, _ := publish(t, 6, []signedbundle.Key{a})
	doc := mustMarshal(t, held)
	sig := func(edits map[string]any) forgedSig { return forgedSig{header(a, td, 6, edits), a} }

	_, kid, err := accept(t, forge(t, doc, sig(nil)), held, "")
	require.NoError(t, err, "a hand-made file with Sign's header verifies")
	require.Equal(t, "a", kid)

	for _, tc := range []struct {
		name, want string
		edits      map[string]any
	}{
		{"fail/typ JWT", `typ "JWT" is a JWT's`, map[string]any{"typ": "JWT"}},
		{"fail/typ JOSE", `typ "JOSE" is a JWT's`, map[string]any{"typ": "JOSE"}},
		{"fail/no typ", `typ "" is a JWT's`, map[string]any{"typ": nil}},
		{"fail/other typ", `typ "application/jose+json" is not a signed bundle's`, map[string]any{"typ": "application/jose+json"}},
		{"fail/unknown critical parameter", `critical header parameter "exp" is not understood`, map[string]any{"crit": []string{"b64", "exp"}, "exp": 1}},
		{"fail/encoded payload", "the payload must be unencoded", map[string]any{"b64": true}},
		{"fail/no b64", "the payload must be unencoded", map[string]any{"b64": nil, "crit": nil}},
		{"fail/b64 not critical", "the payload must be unencoded", map[string]any{"crit": nil}},
		{"fail/no kid", `no "kid"`, map[string]any{"kid": nil}},
		{"fail/empty kid", `no "kid"`, map[string]any{"kid": ""}},
		{"fail/no trust domain", `no "spiffe_trust_domain" protected header`, map[string]any{signedbundle.HeaderTrustDomain: nil}},
		{"fail/no sequence", `no "spiffe_sequence" protected header`, map[string]any{signedbundle.HeaderSequence: nil}},
		{"fail/sequence not a number", "protected header is not a JSON object", map[string]any{signedbundle.HeaderSequence: "6"}},
		{"fail/negative sequence", "protected header is not a JSON object", map[string]any{signedbundle.HeaderSequence: -1}},
		{"fail/invalid trust domain", `protected header spiffe_trust_domain "Alpha Test"`, map[string]any{signedbundle.HeaderTrustDomain: "Alpha Test"}},
		{"fail/sequence other than the document's", "spiffe_bundle has spiffe_sequence 6, the signatures name 7", map[string]any{signedbundle.HeaderSequence: 7}},
		{"fail/alg none", "signatures:", map[string]any{"alg": "none"}},
		{"fail/alg HS256 with the public key as secret", "signatures:", map[string]any{"alg": "HS256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := signedbundle.Parse(forge(t, doc, sig(tc.edits)))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestSignaturesDisagree checks that every signature of a file must name
// the same trust domain and sequence: a second signature cannot smuggle in
// another claim.
func TestSignaturesDisagree(t *testing.T) {
	a, b := newKey(t, "a"), newKey(t, "b")
	held, _ := publish(t, 6, []signedbundle.Key{a, b})
	doc := mustMarshal(t, held)
	beta := spiffeid.RequireTrustDomainFromString("beta.test")
	for _, tc := range []struct {
		name, want string
		second     map[string]any
	}{
		{"fail/other sequence", "signature 1 names alpha.test sequence 7, signature 0 alpha.test sequence 6", header(b, td, 7, nil)},
		{"fail/other trust domain", "signature 1 names beta.test sequence 6", header(b, beta, 6, nil)},
		{"fail/second header malformed", "signature 1: ", header(b, td, 6, map[string]any{"typ": "JWT"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := signedbundle.Parse(forge(t, doc, forgedSig{header(a, td, 6, nil), a}, forgedSig{tc.second, b}))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestMalformedFiles refuses files that are not signed bundles at all, or
// whose parts cannot be decoded, each with what is wrong.
func TestMalformedFiles(t *testing.T) {
	a := newKey(t, "a")
	held, good := publish(t, 6, []signedbundle.Key{a}, a)
	doc := mustMarshal(t, held)
	var f struct {
		Signatures []json.RawMessage `json:"signatures"`
	}
	require.NoError(t, json.Unmarshal(good, &f))
	sig := string(f.Signatures[0])
	withSig := func(protected, signature string) []byte {
		return []byte(`{"spiffe_bundle":` + string(doc) + `,"signatures":[{"protected":"` + protected + `","signature":"` + signature + `"}]}`)
	}
	var protected struct{ Protected, Signature string }
	require.NoError(t, json.Unmarshal(f.Signatures[0], &protected))
	seventeen := strings.TrimSuffix(strings.Repeat(sig+",", 17), ",")

	for _, tc := range []struct {
		name, want string
		file       []byte
	}{
		{"fail/empty", "not a signed bundle", nil},
		{"fail/not JSON", "not a signed bundle", []byte("spiffe_bundle")},
		{"fail/more after the object", "more follows the JSON object", append(append([]byte{}, good...), "{}"...)},
		{"fail/unknown member", "not a signed bundle", []byte(`{"spiffe_bundle":` + string(doc) + `,"signatures":[` + sig + `],"payload":""}`)},
		{"fail/no spiffe_bundle", `no "spiffe_bundle" member`, []byte(`{"signatures":[` + sig + `]}`)},
		{"fail/no signatures", "has no signatures", []byte(`{"spiffe_bundle":` + string(doc) + `}`)},
		{"fail/empty signatures", "has no signatures", []byte(`{"spiffe_bundle":` + string(doc) + `,"signatures":[]}`)},
		{"fail/too many signatures", "has 17 signatures, over the limit of 16", []byte(`{"spiffe_bundle":` + string(doc) + `,"signatures":[` + seventeen + `]}`)},
		{"fail/over the size limit", fmt.Sprintf("over the limit of %d", signedbundle.MaxFileBytes), make([]byte, signedbundle.MaxFileBytes+1)},
		{"fail/protected header not base64url", "protected header is not base64url", withSig("e30+", protected.Signature)},
		{"fail/protected header not an object", "protected header is not a JSON object", withSig(base64.RawURLEncoding.EncodeToString([]byte("[1]")), protected.Signature)},
		{"fail/signature not base64url", "signatures:", withSig(protected.Protected, "!!")},
		{"fail/document not a bundle", "spiffe_bundle: ", forge(t, []byte(`{"spiffe_sequence":6}`), forgedSig{header(a, td, 6, nil), a})},
		{"fail/document without sequence", "spiffe_bundle has no spiffe_sequence", forge(t, []byte(`{"keys":[]}`), forgedSig{header(a, td, 6, nil), a})},
		{"fail/truncated", "not a signed bundle", good[:len(good)/2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := signedbundle.Parse(tc.file)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestIsSigned(t *testing.T) {
	a := newKey(t, "a")
	held, file := publish(t, 1, []signedbundle.Key{a}, a)
	for _, tc := range []struct {
		name string
		data []byte
		want bool
	}{
		{"yes/signed bundle", file, true},
		{"no/plain bundle", mustMarshal(t, held), false},
		{"no/JWT", []byte(jwtSVID(t, a)), false},
		{"no/bundle member only", []byte(`{"spiffe_bundle":{"keys":[]}}`), false},
		{"no/signatures only", []byte(`{"signatures":[]}`), false},
		{"no/not JSON", []byte("-----BEGIN CERTIFICATE-----"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, signedbundle.IsSigned(tc.data))
		})
	}
}
