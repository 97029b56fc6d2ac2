package bundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"maps"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/finding"
)

// jwk is a JWK element as a map, so that tests can break it member by
// member.
type jwk map[string]any

func (k jwk) with(member string, v any) jwk {
	out := maps.Clone(k)
	if v == nil {
		delete(out, member)
	} else {
		out[member] = v
	}
	return out
}

func jwkOf(t testing.TB, key jose.JSONWebKey) jwk {
	t.Helper()
	raw, err := json.Marshal(key)
	require.NoError(t, err)
	var m jwk
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

func x509JWK(t testing.TB, cert *x509.Certificate) jwk {
	return jwkOf(t, jose.JSONWebKey{Key: cert.PublicKey, Use: UseX509SVID, Certificates: []*x509.Certificate{cert}})
}

func jwtJWK(t testing.TB, kid string) jwk {
	return jwkOf(t, jose.JSONWebKey{Key: newJWTKey(t), Use: UseJWTSVID, KeyID: kid})
}

func docOf(t testing.TB, keys ...jwk) []byte {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"keys": keys, "spiffe_sequence": 7})
	require.NoError(t, err)
	return raw
}

func b64(der []byte) string { return base64.StdEncoding.EncodeToString(der) }

// TestParseEntryRules checks, one rule of the standards per case, that a
// bad entry is ignored on its own and the rest of the bundle stands.
func TestParseEntryRules(t *testing.T) {
	ca, ca2 := newCert(t, true, ""), newCert(t, true, "")
	leaf := newCert(t, false, "")
	good, goodJWT := x509JWK(t, ca), jwtJWK(t, "good")
	otherKey := x509JWK(t, ca2)
	type ignored struct {
		index int
		check finding.CheckID
	}
	tests := []struct {
		name    string
		rule    string
		keys    []jwk
		x509    int
		jwt     []string
		ignored []ignored
		warning string
	}{
		{name: "ignored/unknown kty", rule: "SPIFFE Trust Domain and Bundle §4.2.1",
			keys: []jwk{good, goodJWT.with("kty", "XYZ")}, x509: 1, ignored: []ignored{{1, CheckKeyType}}, warning: `unsupported key type "XYZ"`},
		{name: "ignored/missing kty", rule: "SPIFFE Trust Domain and Bundle §4.2.1",
			keys: []jwk{good, goodJWT.with("kty", nil)}, x509: 1, ignored: []ignored{{1, CheckKeyType}}},
		{name: "ignored/missing use", rule: "SPIFFE Trust Domain and Bundle §4.2.2",
			keys: []jwk{good.with("use", nil), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckUse}}},
		{name: "ignored/unknown use", rule: "SPIFFE Trust Domain and Bundle §4.2.2",
			keys: []jwk{good, goodJWT.with("use", "enc")}, x509: 1, ignored: []ignored{{1, CheckUse}}, warning: `unknown use "enc"`},
		{name: "ignored/use is case sensitive", rule: "SPIFFE Trust Domain and Bundle §4.2.2",
			keys: []jwk{good.with("use", "X509-SVID"), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckUse}}},
		{name: "ignored/no x5c", rule: "SPIFFE X509-SVID §6.2",
			keys: []jwk{good.with("x5c", nil), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckX5C}}},
		{name: "ignored/empty x5c", rule: "SPIFFE X509-SVID §6.2",
			keys: []jwk{good.with("x5c", []string{}), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckX5C}}},
		{name: "ok/several x5c use the first", rule: "SPIFFE X509-SVID §6.2",
			keys: []jwk{good.with("x5c", []string{b64(ca.Raw), "not even base64!"})}, x509: 1, warning: "the rest are ignored"},
		{name: "ignored/x5c base64url", rule: "RFC 7517 §4.7",
			keys: []jwk{good.with("x5c", []string{base64.RawURLEncoding.EncodeToString(ca.Raw)}), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckX5C}}, warning: "standard base64"},
		{name: "ignored/x5c not base64", rule: "RFC 7517 §4.7",
			keys: []jwk{good.with("x5c", []string{"@@@"}), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckX5C}}},
		{name: "ignored/x5c bad der", rule: "RFC 7517 §4.7",
			keys: []jwk{good.with("x5c", []string{b64([]byte{0x30, 0x03, 1, 2, 3})}), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckX5C}}},
		{name: "ignored/key members of another key", rule: "RFC 7517 §4.7",
			keys: []jwk{good.with("x", otherKey["x"]).with("y", otherKey["y"]), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckKeyMatch}}},
		{name: "ignored/key members missing", rule: "RFC 7517 §4.7",
			keys: []jwk{good.with("x", nil), goodJWT}, jwt: []string{"good"}, ignored: []ignored{{0, CheckKeyMatch}}},
		{name: "ignored/not a ca", rule: "SPIFFE X509-SVID §4.1",
			keys: []jwk{x509JWK(t, leaf), good}, x509: 1, ignored: []ignored{{0, CheckCA}}},
		{name: "ignored/jwt without kid", rule: "SPIFFE JWT-SVID §6.1",
			keys: []jwk{good, goodJWT.with("kid", nil)}, x509: 1, ignored: []ignored{{1, CheckJWTKID}}},
		{name: "ignored/jwt empty kid", rule: "SPIFFE JWT-SVID §6.1",
			keys: []jwk{good, goodJWT.with("kid", "")}, x509: 1, ignored: []ignored{{1, CheckJWTKID}}},
		{name: "ignored/one kid for two keys", rule: "SPIFFE JWT-SVID §6.2",
			keys: []jwk{good, jwtJWK(t, "k"), jwtJWK(t, "k"), jwtJWK(t, "k")}, x509: 1, ignored: []ignored{{1, CheckDuplicate}, {2, CheckDuplicate}, {3, CheckDuplicate}}},
		{name: "ignored/private key", rule: "SPIFFE Trust Domain and Bundle §4.2",
			keys: []jwk{good, goodJWT.with("d", "c2VjcmV0")}, x509: 1, ignored: []ignored{{1, CheckPrivateKey}}, warning: "compromised"},
		{name: "ignored/not an object", rule: "RFC 7517 §5",
			keys: []jwk{good, {"use": 5}}, x509: 1, ignored: []ignored{{1, CheckKeys}}},
		{name: "ok/other trust domain kept", rule: "SPIFFE Federation §5.1, Trust Domain and Bundle §3",
			keys: []jwk{x509JWK(t, newCert(t, true, "spiffe://gamma.test"))}, x509: 1, warning: `names trust domain "gamma.test"`},
		{name: "ok/duplicate certificate once", rule: "SPIFFE X509-SVID §6.2 (union of CA certificates)",
			keys: []jwk{good, good}, x509: 1, ignored: []ignored{{1, CheckDuplicate}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Parse(td, docOf(t, tt.keys...), Options{})
			require.NoError(t, err, tt.rule)
			require.Len(t, res.Bundle.X509Authorities(), tt.x509, tt.rule)
			var kids []string
			for kid := range res.Bundle.JWTAuthorities() {
				kids = append(kids, kid)
			}
			require.ElementsMatch(t, tt.jwt, kids, tt.rule)
			var got []ignored
			for _, ig := range res.Ignored {
				got = append(got, ignored{ig.Index, ig.Check})
				require.Contains(t, ig.Message, "keys["+strconv.Itoa(ig.Index)+"]", "an ignored entry names its index")
			}
			require.ElementsMatch(t, tt.ignored, got, "%s: %q", tt.rule, res.Warnings)
			require.Equal(t, len(tt.keys), res.Entries)
			if tt.warning != "" {
				require.Contains(t, strings.Join(res.Warnings, "\n"), tt.warning)
			}
			seq, ok := res.Bundle.SequenceNumber()
			require.True(t, ok)
			require.Equal(t, uint64(7), seq, "an ignored entry does not lose the rest of the document")
		})
	}
}

// TestParseEffectivelyEmpty: SPIFFE Trust Domain and Bundle §4.1.3 — a
// document whose entries all fail validation is effectively empty, the
// same as an empty key set, unless the caller needs keys.
func TestParseEffectivelyEmpty(t *testing.T) {
	leaf := x509JWK(t, newCert(t, false, ""))
	doc := docOf(t, leaf, jwtJWK(t, "k").with("kty", "PQC"))
	res, err := Parse(td, doc, Options{})
	require.NoError(t, err)
	require.True(t, res.EffectivelyEmpty())
	require.Len(t, res.Ignored, 2)

	_, err = Parse(td, doc, Options{RequireKeys: true})
	require.ErrorContains(t, err, "all 2 of its entries were ignored")
	require.ErrorContains(t, err, "keys[0] (x509-svid) ignored")

	empty, err := Parse(td, []byte(`{"keys":[]}`), Options{})
	require.NoError(t, err)
	require.True(t, empty.Bundle.Empty())
	require.False(t, empty.EffectivelyEmpty(), "an empty key set is a revocation, not a parse failure")
}

// TestParseSequencePrecision: SPIFFE Trust Domain and Bundle §4.1.1 —
// spiffe_sequence needs at least 64 bits of precision.
func TestParseSequencePrecision(t *testing.T) {
	for _, seq := range []uint64{0, 1 << 53, 1<<53 + 1, 1<<63 + 1, math.MaxUint64} {
		t.Run("ok/"+strconv.FormatUint(seq, 10), func(t *testing.T) {
			doc := []byte(`{"keys":[],"spiffe_sequence":` + strconv.FormatUint(seq, 10) + `}`)
			res, err := Parse(td, doc, Options{})
			require.NoError(t, err)
			got, _ := res.Bundle.SequenceNumber()
			require.Equal(t, seq, got)
			out, err := Marshal(res.Bundle)
			require.NoError(t, err)
			require.Contains(t, string(out), `"spiffe_sequence":`+strconv.FormatUint(seq, 10))
		})
	}
	for _, bad := range []string{"-1", "18446744073709551616", "1.5", "1e3", `"7"`} {
		t.Run("ignored/"+bad, func(t *testing.T) {
			res, err := Parse(td, []byte(`{"keys":[],"spiffe_sequence":`+bad+`}`), Options{})
			require.NoError(t, err)
			_, ok := res.Bundle.SequenceNumber()
			require.False(t, ok)
			require.Contains(t, strings.Join(res.Warnings, "\n"), "not a whole number from 0 to 2^64-1")
		})
	}
}

func TestParseLimits(t *testing.T) {
	key := jwtJWK(t, "k")
	many := make([]jwk, MaxKeys+1)
	for i := range many {
		many[i] = key.with("kid", "k"+strconv.Itoa(i))
	}
	_, err := Parse(td, docOf(t, many...), Options{})
	require.ErrorContains(t, err, "the bundle has 1001 keys, over the limit of 1000")

	big := append([]byte(`{"keys":[],"x":"`), make([]byte, MaxDocumentBytes)...)
	_, err = Parse(td, big, Options{})
	require.ErrorContains(t, err, "over the limit of 1048576")

	_, err = Parse(td, docOf(t, many[:MaxKeys]...), Options{})
	require.NoError(t, err, "exactly the limit is fine")
}

func TestParseX509KeyMatchRSA(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	ca := newCert(t, true, "")
	wrongCurve := jwkOf(t, jose.JSONWebKey{Key: ec.Public(), Use: UseX509SVID}).with("x5c", []string{b64(ca.Raw)})
	res, err := Parse(td, docOf(t, wrongCurve), Options{})
	require.NoError(t, err)
	require.Len(t, res.Ignored, 1)
	require.Equal(t, CheckKeyMatch, res.Ignored[0].Check)
}
