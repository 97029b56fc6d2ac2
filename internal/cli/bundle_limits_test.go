package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
)

// jwkSet writes a SPIFFE bundle of n JWT authorities sharing one key.
func jwkSet(t *testing.T, n int) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	x := base64.RawURLEncoding.EncodeToString(key.X.FillBytes(make([]byte, 32)))
	y := base64.RawURLEncoding.EncodeToString(key.Y.FillBytes(make([]byte, 32)))
	var b strings.Builder
	b.WriteString(`{"keys":[`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"kty":"EC","use":"jwt-svid","kid":"k%d","crv":"P-256","x":"%s","y":"%s"}`, i, x, y)
	}
	b.WriteString(`]}`)
	path := filepath.Join(t.TempDir(), "bundle.json")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	return path
}

// pemCerts writes n copies of one CA certificate as PEM.
func pemCerts(t *testing.T, n int) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	path := filepath.Join(t.TempDir(), "bundle.pem")
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat(string(block), n)), 0o600))
	return path
}

// TestBundleSetLimits: `bundle set` checks a bundle against the limits
// before sending it, and says what the limit is and that nothing was
// stored; gRPC's own refusal of a message that is too large says the same.
func TestBundleSetLimits(t *testing.T) {
	socket := startServer(t, "alpha.test")
	for _, tc := range []struct {
		name   string
		path   string
		format string
		stderr []string
	}{
		{name: "fail/1001 keys", path: jwkSet(t, 1001), format: "spiffe", stderr: []string{"the bundle has 1001 keys, over the limit of 1000"}},
		{name: "fail/60000 keys", path: jwkSet(t, 60000), format: "spiffe", stderr: []string{"bytes, over the limit of 1048576 (1 MiB)"}},
		{name: "fail/1001 PEM certificates", path: pemCerts(t, 1001), format: "pem", stderr: []string{"1001 PEM blocks, over the limit of 1000 certificates per bundle"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := run(t, "", "bundle", "set", "-id", "spiffe://beta.test", "-format", tc.format, "-path", tc.path, "-socketPath", socket)
			require.Equal(t, 1, code, "stdout: %s\nstderr: %s", stdout, stderr)
			for _, phrase := range append(tc.stderr, "nothing was stored") {
				require.Contains(t, stderr, phrase)
			}
			require.NotContains(t, stderr, "received message larger than max")
		})
	}

	t.Run("fail/60000 keys sent anyway are refused by gRPC, explained", func(t *testing.T) {
		b := &types.Bundle{TrustDomain: "beta.test"}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		require.NoError(t, err)
		for i := range 60000 {
			b.JwtAuthorities = append(b.JwtAuthorities, &types.JWTKey{KeyId: fmt.Sprintf("k%d", i), PublicKey: der})
		}
		err = withClient(t.Context(), socket, func(ctx context.Context, conn *grpc.ClientConn) error {
			_, err := bundlev1.NewBundleClient(conn).BatchSetFederatedBundle(ctx, &bundlev1.BatchSetFederatedBundleRequest{Bundle: []*types.Bundle{b}})
			return err
		})
		require.ErrorContains(t, err, "over gRPC's limit of 4194304, so it was refused and nothing was stored")
		require.ErrorContains(t, err, "A bundle may hold at most 1000 keys and 1048576 bytes (1 MiB)")
	})

	stdout, _, code := run(t, "", "bundle", "count", "-socketPath", socket)
	require.Zero(t, code)
	require.Equal(t, "1 bundle\n", stdout, "nothing was stored")
}
