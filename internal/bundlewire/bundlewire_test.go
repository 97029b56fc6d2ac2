package bundlewire_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/treatyhq/treaty/internal/bundle"
	"github.com/treatyhq/treaty/internal/bundlewire"
	"github.com/treatyhq/treaty/internal/testpki"
)

var td = spiffeid.RequireTrustDomainFromString("alpha.test")

// sample returns a bundle with two X.509 authorities, an EC, an RSA and an
// Ed25519 JWT authority, a refresh hint and a sequence.
func sample(t *testing.T) *spiffebundle.Bundle {
	t.Helper()
	b := spiffebundle.New(td)
	b.AddX509Authority(testpki.CACert(t, "spiffe://alpha.test"))
	b.AddX509Authority(testpki.CACert(t, "spiffe://alpha.test"))
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, b.AddJWTAuthority("kid-ec", ec.Public()))
	require.NoError(t, b.AddJWTAuthority("kid-rsa", rsaKey.Public()))
	require.NoError(t, b.AddJWTAuthority("kid-ed", edPub))
	b.SetRefreshHint(5 * time.Minute)
	b.SetSequenceNumber(1<<63 + 7) // past int64: the full uint64 must survive
	return b
}

// TestRoundTrip converts a bundle to SPIRE's type, through its wire
// encoding, and back: nothing is lost or changed.
func TestRoundTrip(t *testing.T) {
	b := sample(t)
	raw, err := proto.Marshal(bundlewire.ToProto(b, nil, nil, nil))
	require.NoError(t, err)
	var wire types.Bundle
	require.NoError(t, proto.Unmarshal(raw, &wire))
	back, err := bundlewire.FromProto(&wire)
	require.NoError(t, err)
	require.True(t, back.Equal(b), "round trip changed the bundle")
	want, err := bundle.Marshal(b)
	require.NoError(t, err)
	got, err := bundle.Marshal(back)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))
}

func TestToProto(t *testing.T) {
	b := sample(t)
	x509s := b.X509Authorities()
	tainted := func(cert *x509.Certificate, kid string) bool {
		return (cert != nil && cert.Equal(x509s[1])) || kid == "kid-rsa"
	}
	expires := time.Unix(1_900_000_000, 0)
	out := bundlewire.ToProto(b, nil, tainted, map[string]time.Time{"kid-ec": expires})

	require.Equal(t, "alpha.test", out.GetTrustDomain())
	require.Len(t, out.GetX509Authorities(), 2)
	require.Equal(t, x509s[0].Raw, out.GetX509Authorities()[0].GetAsn1())
	require.False(t, out.GetX509Authorities()[0].GetTainted())
	require.True(t, out.GetX509Authorities()[1].GetTainted())

	var kids []string
	for _, k := range out.GetJwtAuthorities() {
		kids = append(kids, k.GetKeyId())
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		require.NoError(t, err)
		require.True(t, pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(b.JWTAuthorities()[k.GetKeyId()]), k.GetKeyId())
	}
	require.Equal(t, []string{"kid-ec", "kid-ed", "kid-rsa"}, kids, "sorted by key ID, so that output is stable")
	require.Equal(t, expires.Unix(), out.GetJwtAuthorities()[0].GetExpiresAt())
	require.Zero(t, out.GetJwtAuthorities()[1].GetExpiresAt(), "no expiry given")
	require.True(t, out.GetJwtAuthorities()[2].GetTainted())
	require.False(t, out.GetJwtAuthorities()[0].GetTainted())
	require.Equal(t, int64(300), out.GetRefreshHint())
	require.Equal(t, uint64(1<<63+7), out.GetSequenceNumber())
}

func TestToProtoMask(t *testing.T) {
	b := sample(t)
	for _, tc := range []struct {
		name                     string
		mask                     *types.BundleMask
		x509, jwt, hint, seqWant bool
	}{
		{"ok/nil mask keeps all", nil, true, true, true, true},
		{"ok/empty mask keeps only the trust domain", &types.BundleMask{}, false, false, false, false},
		{"ok/x509 only", &types.BundleMask{X509Authorities: true}, true, false, false, false},
		{"ok/jwt only", &types.BundleMask{JwtAuthorities: true}, false, true, false, false},
		{"ok/hint and sequence", &types.BundleMask{RefreshHint: true, SequenceNumber: true}, false, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := bundlewire.ToProto(b, tc.mask, nil, nil)
			require.Equal(t, "alpha.test", out.GetTrustDomain())
			require.Equal(t, tc.x509, len(out.GetX509Authorities()) == 2)
			require.Equal(t, tc.jwt, len(out.GetJwtAuthorities()) == 3)
			require.Equal(t, tc.hint, out.GetRefreshHint() == 300)
			require.Equal(t, tc.seqWant, out.GetSequenceNumber() == 1<<63+7)
		})
	}
}

// TestToProtoEmpty checks that a bundle without authorities, hint or
// sequence has empty lists (SPIRE's CLI prints them) and zero values.
func TestToProtoEmpty(t *testing.T) {
	out := bundlewire.ToProto(spiffebundle.New(td), nil, nil, nil)
	require.NotNil(t, out.GetX509Authorities())
	require.Empty(t, out.GetX509Authorities())
	require.NotNil(t, out.GetJwtAuthorities())
	require.Empty(t, out.GetJwtAuthorities())
	require.Zero(t, out.GetRefreshHint())
	require.Zero(t, out.GetSequenceNumber())
}

// TestToProtoLeavesOutUnencodable checks that a JWT authority whose key
// has no PKIX encoding is left out rather than sent empty.
func TestToProtoLeavesOutUnencodable(t *testing.T) {
	b := spiffebundle.New(td)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.NoError(t, b.AddJWTAuthority("good", ec.Public()))
	require.NoError(t, b.AddJWTAuthority("odd", struct{}{}))
	out := bundlewire.ToProto(b, nil, nil, nil)
	require.Len(t, out.GetJwtAuthorities(), 1)
	require.Equal(t, "good", out.GetJwtAuthorities()[0].GetKeyId())
}

// TestFromProtoForeignCertificate checks that a certificate naming another
// trust domain is kept, as bundle.Parse keeps it in a document: the bundle
// belongs to the trust domain the request names.
func TestFromProtoForeignCertificate(t *testing.T) {
	cert := testpki.CACert(t, "spiffe://other.test")
	b, err := bundlewire.FromProto(&types.Bundle{TrustDomain: "alpha.test", X509Authorities: []*types.X509Certificate{{Asn1: cert.Raw}}})
	require.NoError(t, err)
	require.Equal(t, td, b.TrustDomain())
	require.True(t, b.HasX509Authority(cert))
	_, ok := b.SequenceNumber()
	require.True(t, ok, "a sequence of 0 is still a sequence")
}

// TestFromProtoTrustDomainSpellings checks that the trust domain may be
// given as a name or as a SPIFFE ID, as SPIRE's own API takes it.
func TestFromProtoTrustDomainSpellings(t *testing.T) {
	for _, name := range []string{"alpha.test", "spiffe://alpha.test", "spiffe://alpha.test/workload"} {
		b, err := bundlewire.FromProto(&types.Bundle{TrustDomain: name})
		require.NoError(t, err, name)
		require.Equal(t, td, b.TrustDomain(), name)
	}
}

func TestFromProtoRefuses(t *testing.T) {
	ca := testpki.CACert(t, "spiffe://alpha.test")
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	pub, err := x509.MarshalPKIXPublicKey(ec.Public())
	require.NoError(t, err)
	jwt := func(kid string) *types.JWTKey { return &types.JWTKey{KeyId: kid, PublicKey: pub} }
	certs := func(ders ...[]byte) []*types.X509Certificate {
		var out []*types.X509Certificate
		for _, der := range ders {
			out = append(out, &types.X509Certificate{Asn1: der})
		}
		return out
	}
	tooMany := make([]*types.JWTKey, bundle.MaxKeys+1)
	for i := range tooMany {
		tooMany[i] = jwt("k")
	}

	for _, tc := range []struct {
		name, want string
		in         *types.Bundle
	}{
		{"fail/no trust domain", `trust_domain ""`, &types.Bundle{}},
		{"fail/invalid trust domain", `trust_domain "Alpha Test"`, &types.Bundle{TrustDomain: "Alpha Test"}},
		{"fail/certificate not DER", "x509_authorities[0]: not a valid X.509 certificate", &types.Bundle{TrustDomain: "alpha.test", X509Authorities: certs([]byte("not DER"))}},
		{"fail/truncated certificate", "x509_authorities[1]: not a valid X.509 certificate", &types.Bundle{TrustDomain: "alpha.test", X509Authorities: certs(ca.Raw, ca.Raw[:len(ca.Raw)/2])}},
		{"fail/not a CA", "x509_authorities[1]: certificate \"CN=test\" is not a CA certificate", &types.Bundle{TrustDomain: "alpha.test", X509Authorities: certs(ca.Raw, leaf(t, false, x509.KeyUsageDigitalSignature))}},
		{"fail/CA without keyCertSign", "lacks keyCertSign", &types.Bundle{TrustDomain: "alpha.test", X509Authorities: certs(leaf(t, true, x509.KeyUsageDigitalSignature))}},
		{"fail/no key ID", "jwt_authorities[1]: key_id is required", &types.Bundle{TrustDomain: "alpha.test", JwtAuthorities: []*types.JWTKey{jwt("a"), jwt("")}}},
		{"fail/key not PKIX", `jwt_authorities[0] (key_id "a"): public_key is not a PKIX public key`, &types.Bundle{TrustDomain: "alpha.test", JwtAuthorities: []*types.JWTKey{{KeyId: "a", PublicKey: []byte{0x30, 0x00}}}}},
		{"fail/duplicate key ID", `jwt_authorities[1]: duplicate key_id "a"`, &types.Bundle{TrustDomain: "alpha.test", JwtAuthorities: []*types.JWTKey{jwt("a"), jwt("a")}}},
		{"fail/negative refresh hint", "refresh_hint -1 is negative", &types.Bundle{TrustDomain: "alpha.test", RefreshHint: -1}},
		{"fail/too many authorities", "the bundle has 1001 authorities (0 X.509, 1001 JWT), over the limit of 1000", &types.Bundle{TrustDomain: "alpha.test", JwtAuthorities: tooMany}},
		{"fail/too large", "over the limit of 1048576 (1 MiB)", &types.Bundle{TrustDomain: "alpha.test", X509Authorities: certs(make([]byte, bundle.MaxDocumentBytes))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bundlewire.FromProto(tc.in)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, b, "nothing is returned half")
		})
	}
}

// TestParseJWTKey reads one JWT authority of a request on its own, as the
// admin API's AppendBundle does.
func TestParseJWTKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(ec.Public())
	require.NoError(t, err)
	pub, err := bundlewire.ParseJWTKey(3, &types.JWTKey{KeyId: "k", PublicKey: der})
	require.NoError(t, err)
	require.True(t, ec.PublicKey.Equal(pub))

	_, err = bundlewire.ParseJWTKey(3, &types.JWTKey{KeyId: "k", PublicKey: der[:len(der)-1]})
	require.ErrorContains(t, err, `jwt_authorities[3] (key_id "k")`)
	_, err = bundlewire.ParseJWTKey(4, nil)
	require.ErrorContains(t, err, "jwt_authorities[4]: key_id is required")
}

// leaf returns a self-signed certificate with the given CA flag and key
// usage; with isCA false it is a leaf.
func leaf(t *testing.T, isCA bool, usage x509.KeyUsage) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		BasicConstraintsValid: true, IsCA: isCA, KeyUsage: usage,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	return der
}
