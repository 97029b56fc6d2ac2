package bundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/finding"
)

// corpusNow is the clock the corpus is judged at; its certificates are
// dated around it so results never change.
var corpusNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// corpusTD is the trust domain the corpus belongs to.
var corpusTD = spiffeid.RequireTrustDomainFromString("alpha.test")

const corpusDir = "testdata/bundles"

// TestCorpus validates every document of the corpus and checks the
// outcome of the check each one is about. Run with -update to regenerate
// the corpus from fresh keys (the goldens then change too).
func TestCorpus(t *testing.T) {
	if *update {
		writeCorpus(t)
	}
	cases := []struct {
		file     string
		check    finding.CheckID
		severity finding.Severity
		phrase   string
	}{
		{"good.json", "", finding.Pass, ""},
		{"good.pem", "", finding.Pass, ""},
		{"not-json.html", CheckFormat, finding.Fail, "looks like an HTML page"},
		{"no-keys.json", CheckKeys, finding.Fail, `no "keys" member`},
		{"private-key.json", CheckPrivateKey, finding.Fail, `private key material ("d")`},
		{"private-key.pem", CheckPrivateKey, finding.Fail, "PRIVATE KEY"},
		{"unknown-use.json", CheckUse, finding.Warn, `unknown use "enc"`},
		{"two-x5c.json", CheckX5C, finding.Warn, "the first is the authority and the rest are ignored"},
		{"leaf.json", CheckCA, finding.Fail, "not a CA certificate"},
		{"no-keycertsign.json", CheckCA, finding.Fail, "lacks keyCertSign"},
		{"mixed-td.json", CheckTrustDomain, finding.Warn, `names trust domain "beta.test"`},
		{"duplicate-kid.json", CheckDuplicate, finding.Warn, "duplicate of keys[1]"},
		{"no-kid.json", CheckJWTKID, finding.Fail, `no "kid"`},
		{"jwt-only.json", CheckX509Present, finding.Fail, "no x509-svid authority"},
		{"expired.json", CheckExpiry, finding.Fail, "every X.509 authority has expired"},
		{"expiring.json", CheckExpiry, finding.Warn, "expires in 14 days"},
		{"hint-days.json", CheckRefreshHint, finding.Warn, "will miss CA rotations"},
		{"hint-ms.json", CheckRefreshHint, finding.Warn, "looks like milliseconds (5m0s)"},
		{"hint-string.json", CheckRefreshHint, finding.Warn, "not a non-negative whole number"},
		{"sequence-number.json", CheckSequence, finding.Warn, "spiffe_sequence_number"},
		{"unknown-member.json", CheckMembers, finding.Warn, `unknown member "spiffe_refresh"`},
	}
	for _, tc := range cases {
		t.Run(string(tc.severity)+"/"+tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(corpusDir, tc.file))
			require.NoError(t, err)
			v := Validate(corpusTD, data, ValidateOptions{Now: corpusNow})
			if tc.check == "" {
				require.Equal(t, finding.Pass, v.Worst(), "%v", v.Findings)
				require.NotNil(t, v.Bundle)
				return
			}
			require.Equal(t, tc.severity, v.Worst(), "%v", v.Findings)
			var hit bool
			for _, f := range v.Findings {
				if f.Check == tc.check && f.Severity == tc.severity && strings.Contains(f.Message, tc.phrase) {
					hit = true
				}
			}
			require.True(t, hit, "no %s %s finding containing %q in %v", tc.severity, tc.check, tc.phrase, v.Findings)
		})
	}
}

// corpusCert makes a certificate for the corpus.
func corpusCert(t *testing.T, uri string, isCA bool, usage x509.KeyUsage, from, to time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	u, err := url.Parse(uri)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{Organization: []string{"corpus"}, CommonName: uri},
		NotBefore: from, NotAfter: to, BasicConstraintsValid: true, IsCA: isCA, KeyUsage: usage, URIs: []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

func writeCorpus(t *testing.T) {
	require.NoError(t, os.MkdirAll(corpusDir, 0o755))
	long := func(uri string) *x509.Certificate {
		return corpusCert(t, uri, true, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, corpusNow.AddDate(-1, 0, 0), corpusNow.AddDate(98, 0, 0))
	}
	ca := long("spiffe://alpha.test")
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	x509JWK := func(c ...*x509.Certificate) map[string]any {
		k, err := json.Marshal(jose.JSONWebKey{Key: c[0].PublicKey, Use: UseX509SVID, Certificates: c})
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(k, &m))
		return m
	}
	jwtJWK := func(kid string, key any) map[string]any {
		k, err := json.Marshal(jose.JSONWebKey{Key: key, Use: UseJWTSVID, KeyID: kid})
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(k, &m))
		return m
	}
	doc := func(keys []map[string]any, extra map[string]any) []byte {
		m := map[string]any{"keys": keys, "spiffe_refresh_hint": 300, "spiffe_sequence": 3}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
				continue
			}
			m[k] = v
		}
		out, err := json.MarshalIndent(m, "", "  ")
		require.NoError(t, err)
		return append(out, '\n')
	}
	good := []map[string]any{x509JWK(ca), jwtJWK("key-1", jwtKey.Public())}
	withPrivate := jwtJWK("key-2", jwtKey)
	unknownUse := jwtJWK("key-3", jwtKey.Public())
	unknownUse["use"] = "enc"
	noKid := jwtJWK("", jwtKey.Public())
	twoX5C := x509JWK(ca)
	twoX5C["x5c"] = []string{base64.StdEncoding.EncodeToString(ca.Raw), base64.StdEncoding.EncodeToString(ca.Raw)}
	expiring := corpusCert(t, "spiffe://alpha.test", true, x509.KeyUsageCertSign, corpusNow.AddDate(-1, 0, 0), corpusNow.Add(14*24*time.Hour))
	expired := corpusCert(t, "spiffe://alpha.test", true, x509.KeyUsageCertSign, corpusNow.AddDate(-2, 0, 0), corpusNow.AddDate(-1, 0, 0))
	files := map[string][]byte{
		"good.json":            doc(good, nil),
		"good.pem":             pemCert(ca.Raw),
		"not-json.html":        []byte("<!DOCTYPE html>\n<html><body>Sign in</body></html>\n"),
		"no-keys.json":         []byte(`{"spiffe_refresh_hint": 300}` + "\n"),
		"private-key.json":     doc([]map[string]any{x509JWK(ca), withPrivate}, nil),
		"private-key.pem":      append(pemCert(ca.Raw), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")...),
		"unknown-use.json":     doc(append(good, unknownUse), nil),
		"two-x5c.json":         doc([]map[string]any{twoX5C}, nil),
		"leaf.json":            doc([]map[string]any{x509JWK(corpusCert(t, "spiffe://alpha.test/svc", false, x509.KeyUsageDigitalSignature, corpusNow.AddDate(-1, 0, 0), corpusNow.AddDate(98, 0, 0)))}, nil),
		"no-keycertsign.json":  doc([]map[string]any{x509JWK(corpusCert(t, "spiffe://alpha.test", true, x509.KeyUsageDigitalSignature, corpusNow.AddDate(-1, 0, 0), corpusNow.AddDate(98, 0, 0)))}, nil),
		"mixed-td.json":        doc([]map[string]any{x509JWK(ca), x509JWK(long("spiffe://beta.test"))}, nil),
		"duplicate-kid.json":   doc([]map[string]any{x509JWK(ca), jwtJWK("key-1", jwtKey.Public()), jwtJWK("key-1", jwtKey.Public())}, nil),
		"no-kid.json":          doc([]map[string]any{x509JWK(ca), noKid}, nil),
		"jwt-only.json":        doc([]map[string]any{jwtJWK("key-1", jwtKey.Public())}, nil),
		"expired.json":         doc([]map[string]any{x509JWK(expired)}, nil),
		"expiring.json":        doc([]map[string]any{x509JWK(expiring)}, nil),
		"hint-days.json":       doc(good, map[string]any{"spiffe_refresh_hint": 432000}),
		"hint-ms.json":         doc(good, map[string]any{"spiffe_refresh_hint": 300000}),
		"hint-string.json":     doc(good, map[string]any{"spiffe_refresh_hint": "300"}),
		"sequence-number.json": doc(good, map[string]any{"spiffe_sequence": nil, "spiffe_sequence_number": 3}),
		"unknown-member.json":  doc(good, map[string]any{"spiffe_refresh": 300}),
		"jwks.json":            mustJSON(t, map[string]any{"keys": []map[string]any{{"kty": jwtJWK("k", jwtKey.Public())["kty"], "crv": "P-256", "x": jwtJWK("k", jwtKey.Public())["x"], "y": jwtJWK("k", jwtKey.Public())["y"], "kid": "oidc-1", "alg": "ES256"}}}),
	}
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(corpusDir, name), data, 0o644))
	}
}

func mustJSON(t *testing.T, v any) []byte {
	out, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	return append(out, '\n')
}
