package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/stretchr/testify/require"
)

var td = spiffeid.RequireTrustDomainFromString("beta.test")

func newCert(t testing.TB, isCA bool, uri string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	if uri != "" {
		u, err := url.Parse(uri)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

func newJWTKey(t testing.TB) crypto.PublicKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return key.Public()
}

func sampleBundle(t testing.TB) *spiffebundle.Bundle {
	b := spiffebundle.New(td)
	b.AddX509Authority(newCert(t, true, "spiffe://beta.test"))
	b.AddX509Authority(newCert(t, true, ""))
	for _, kid := range []string{"kid-c", "kid-a", "kid-b"} {
		require.NoError(t, b.AddJWTAuthority(kid, newJWTKey(t)))
	}
	b.SetRefreshHint(5 * time.Minute)
	b.SetSequenceNumber(42)
	return b
}

func TestMarshalIsDeterministicAndRoundTrips(t *testing.T) {
	b := sampleBundle(t)
	first, err := Marshal(b)
	require.NoError(t, err)
	for range 20 {
		again, err := Marshal(b)
		require.NoError(t, err)
		require.Equal(t, string(first), string(again))
	}
	require.Less(t, strings.Index(string(first), "kid-a"), strings.Index(string(first), "kid-b"))
	require.Contains(t, string(first), `"spiffe_refresh_hint":300,"spiffe_sequence":42}`)

	// go-spiffe, the reference client, accepts the output.
	ref, err := spiffebundle.Parse(td, first)
	require.NoError(t, err)
	require.True(t, ref.Equal(b))

	res, err := Parse(td, first, Options{RequireKeys: true})
	require.NoError(t, err)
	require.Empty(t, res.Warnings)
	require.True(t, res.Bundle.Equal(b))
}

func TestFingerprintIgnoresSequenceAndHint(t *testing.T) {
	b := sampleBundle(t)
	f1, err := Fingerprint(b)
	require.NoError(t, err)
	b.SetSequenceNumber(43)
	b.SetRefreshHint(time.Minute)
	f2, err := Fingerprint(b)
	require.NoError(t, err)
	require.Equal(t, f1, f2)
	require.NoError(t, b.AddJWTAuthority("kid-d", newJWTKey(t)))
	f3, err := Fingerprint(b)
	require.NoError(t, err)
	require.NotEqual(t, f1, f3)
}

func x5cKey(t testing.TB, cert *x509.Certificate) string {
	point, err := cert.PublicKey.(*ecdsa.PublicKey).Bytes() // 0x04 || X || Y
	require.NoError(t, err)
	enc := base64.RawURLEncoding
	return fmt.Sprintf(`{"use":"x509-svid","kty":"EC","crv":"P-256","x":%q,"y":%q,"x5c":[%q]}`,
		enc.EncodeToString(point[1:33]), enc.EncodeToString(point[33:]), base64.StdEncoding.EncodeToString(cert.Raw))
}

func TestParse(t *testing.T) {
	ca := x5cKey(t, newCert(t, true, ""))
	leaf := x5cKey(t, newCert(t, false, ""))
	foreign := x5cKey(t, newCert(t, true, "spiffe://alpha.test"))
	tests := []struct {
		name     string
		doc      string
		opts     Options
		problems []string
		warnings []string
		x509     int
	}{
		{name: "ok/one ca", doc: `{"keys":[` + ca + `]}`, x509: 1},
		{name: "ok/empty keys revoke all", doc: `{"keys":[]}`},
		{name: "ok/unknown use skipped", doc: `{"keys":[` + ca + `,{"use":"enc","kty":"EC"}]}`, x509: 1, warnings: []string{`unknown use "enc"`}},
		{name: "ok/unknown kty skipped", doc: `{"keys":[{"use":"jwt-svid","kty":"XYZ","kid":"k"}]}`, warnings: []string{`unsupported key type "XYZ"`}},
		{name: "ok/unknown member", doc: `{"keys":[],"x":1}`, warnings: []string{`unknown member "x"`}},
		{name: "ok/sequence number typo", doc: `{"keys":[],"spiffe_sequence_number":3}`, warnings: []string{`the sequence member is "spiffe_sequence"`}},
		{name: "ok/refresh hint of days", doc: `{"keys":[],"spiffe_refresh_hint":432000}`, warnings: []string{"will miss CA rotations"}},
		{name: "fail/not json", doc: `hello`, problems: []string{"not a JSON object"}},
		{name: "fail/html page", doc: `<!DOCTYPE html><html>502</html>`, problems: []string{"looks like an HTML page"}},
		{name: "fail/no keys member", doc: `{"spiffe_sequence":1}`, problems: []string{`no "keys" member`}},
		{name: "fail/keys empty but required", doc: `{"keys":[]}`, opts: Options{RequireKeys: true}, problems: []string{"no usable keys"}},
		{name: "ok/leaf ignored", doc: `{"keys":[` + leaf + `,` + ca + `]}`, x509: 1, warnings: []string{"keys[0] (x509-svid) ignored: certificate"}},
		{name: "ok/other trust domain kept with a warning", doc: `{"keys":[` + foreign + `]}`, x509: 1, warnings: []string{`names trust domain "alpha.test"`}},
		{name: "ok/garbage first x5c ignores the entry", doc: strings.Replace(`{"keys":[`+ca+`]}`, `"x5c":[`, `"x5c":["AAAA",`, 1), warnings: []string{`"x5c" holds 2 certificates`, `keys[0] (x509-svid) ignored: x5c[0] is not a DER X.509 certificate`}},
		{name: "fail/leaf only and keys required", doc: `{"keys":[` + leaf + `]}`, opts: Options{RequireKeys: true}, problems: []string{"no usable keys: all 1 of its entries were ignored", "is not a CA certificate"}},
		{name: "fail/keys not an array", doc: `{"keys":{}}`, problems: []string{`"keys" must be an array`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Parse(td, []byte(tt.doc), tt.opts)
			if len(tt.problems) > 0 {
				require.Error(t, err)
				var perr *Error
				require.ErrorAs(t, err, &perr)
				for _, want := range tt.problems {
					require.Contains(t, err.Error(), want)
				}
				return
			}
			require.NoError(t, err)
			require.Len(t, res.Bundle.X509Authorities(), tt.x509)
			require.Len(t, res.Warnings, len(tt.warnings), "warnings: %q", res.Warnings)
			for i, want := range tt.warnings {
				require.Contains(t, res.Warnings[i], want)
			}
		})
	}
}

func TestParseDuplicateKid(t *testing.T) {
	b := spiffebundle.New(td)
	require.NoError(t, b.AddJWTAuthority("same", newJWTKey(t)))
	raw, err := Marshal(b)
	require.NoError(t, err)
	key := strings.TrimSuffix(strings.TrimPrefix(string(raw), `{"keys":[`), `]}`)
	res, err := Parse(td, []byte(`{"keys":[`+key+`,`+key+`]}`), Options{})
	require.NoError(t, err)
	require.True(t, res.Bundle.HasJWTAuthority("same"), "the same key twice is kept once")
	require.Len(t, res.Ignored, 1)
	require.Contains(t, res.Ignored[0].Message, "duplicate of keys[0]")
}

func pemOf(blocks ...*pem.Block) []byte {
	var out []byte
	for _, b := range blocks {
		out = append(out, pem.EncodeToMemory(b)...)
	}
	return out
}

func TestParsePEM(t *testing.T) {
	ca1, ca2 := newCert(t, true, ""), newCert(t, true, "spiffe://beta.test")
	leaf := newCert(t, false, "")
	tests := []struct {
		name    string
		data    []byte
		problem string
		n       int
	}{
		{name: "ok/two cas", data: pemOf(&pem.Block{Type: "CERTIFICATE", Bytes: ca1.Raw}, &pem.Block{Type: "CERTIFICATE", Bytes: ca2.Raw}), n: 2},
		{name: "fail/no pem", data: []byte("hello"), problem: "no PEM block found"},
		{name: "fail/json given as pem", data: []byte(`{"keys":[]}`), problem: "use -format spiffe"},
		{name: "fail/only a key", data: pemOf(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), problem: "PEM block 1 ignored: is a PUBLIC KEY"},
		{name: "fail/private key", data: pemOf(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), problem: "private key must be considered compromised"},
		{name: "fail/leaf", data: pemOf(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), problem: "PEM block 1 ignored: certificate"},
		{name: "fail/garbage cert", data: pemOf(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}), problem: "not a valid X.509 certificate"},
		{name: "ok/leaf beside a ca ignored", data: pemOf(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}, &pem.Block{Type: "CERTIFICATE", Bytes: ca1.Raw}), n: 1},
		{name: "ok/private key beside a ca ignored", data: pemOf(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}, &pem.Block{Type: "CERTIFICATE", Bytes: ca1.Raw}), n: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ParsePEM(td, tt.data, Options{})
			if tt.problem != "" {
				require.ErrorContains(t, err, tt.problem)
				return
			}
			require.NoError(t, err)
			require.Len(t, res.Bundle.X509Authorities(), tt.n)
		})
	}
}

func FuzzParse(f *testing.F) {
	raw, err := Marshal(sampleBundle(f))
	require.NoError(f, err)
	f.Add(raw)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"use":"x509-svid","kty":"EC","x5c":["AAAA"]}],"spiffe_sequence":-1}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Parse(td, data, Options{})
		if err != nil {
			require.Nil(t, res, "an error never comes with a half-filled result")
			return
		}
		checkRoundTrip(t, res)
	})
}

// checkRoundTrip holds the properties of whatever Parse or ParsePEM
// accepts: every entry is either an authority or ignored, and the bundle
// survives Marshal and Parse unchanged, with nothing ignored.
func checkRoundTrip(t *testing.T, res *Result) {
	t.Helper()
	kept := len(res.Bundle.X509Authorities()) + len(res.Bundle.JWTAuthorities())
	require.Equal(t, res.Entries, kept+len(res.Ignored), "ignored: %v", res.Ignored)
	out, err := Marshal(res.Bundle)
	require.NoError(t, err)
	again, err := Parse(td, out, Options{})
	require.NoError(t, err)
	require.True(t, again.Bundle.Equal(res.Bundle))
	require.Empty(t, again.Ignored)
}

func FuzzParsePEM(f *testing.F) {
	f.Add(pemOf(&pem.Block{Type: "CERTIFICATE", Bytes: newCert(f, true, "").Raw}))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ParsePEM(td, data, Options{})
		if err != nil {
			require.Nil(t, res, "an error never comes with a half-filled result")
			return
		}
		require.NotEmpty(t, res.Bundle.X509Authorities(), "ParsePEM succeeds only with a certificate")
		checkRoundTrip(t, res)
	})
}
