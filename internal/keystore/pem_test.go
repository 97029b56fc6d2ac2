package keystore

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// TestParsePrivateKeyPEMFormats: every format an operator's key file may
// use loads as the same key, and what is not a signing key is refused.
func TestParsePrivateKeyPEMFormats(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	require.NoError(t, err)
	cert := pemBlock("CERTIFICATE", []byte{0x30, 0})
	mustDER := func(der []byte, err error) []byte {
		require.NoError(t, err)
		return der
	}

	for _, tc := range []struct {
		name   string
		data   []byte
		want   crypto.PublicKey
		phrase string
	}{
		{name: "ok/PKCS#8 EC", data: pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(ec))), want: ec.Public()},
		{name: "ok/PKCS#8 RSA", data: pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(rsaKey))), want: rsaKey.Public()},
		{name: "ok/PKCS#8 Ed25519", data: pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(ed))), want: ed.Public()},
		{name: "ok/SEC 1 EC", data: pemBlock("EC PRIVATE KEY", mustDER(x509.MarshalECPrivateKey(ec))), want: ec.Public()},
		{name: "ok/PKCS#1 RSA", data: pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), want: rsaKey.Public()},
		{name: "ok/key after a certificate", data: append(cert, pemBlock("EC PRIVATE KEY", mustDER(x509.MarshalECPrivateKey(ec)))...), want: ec.Public()},
		{name: "fail/certificate only", data: cert, phrase: "no PEM private key found"},
		{name: "fail/empty", phrase: "no PEM private key found"},
		{name: "fail/PKCS#8 X25519 cannot sign", data: pemBlock("PRIVATE KEY", mustDER(x509.MarshalPKCS8PrivateKey(x25519))), phrase: "unsupported private key type"},
		{name: "fail/corrupt PKCS#8", data: pemBlock("PRIVATE KEY", []byte{0x30, 1, 2}), phrase: "parse PKCS#8 key"},
		{name: "fail/corrupt SEC 1", data: pemBlock("EC PRIVATE KEY", []byte{0x30, 1, 2}), phrase: "parse SEC 1 key"},
		{name: "fail/corrupt PKCS#1", data: pemBlock("RSA PRIVATE KEY", []byte{0x30, 1, 2}), phrase: "parse PKCS#1 key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := ParsePrivateKeyPEM(tc.data)
			if tc.phrase != "" {
				require.ErrorContains(t, err, tc.phrase)
				require.True(t, key == nil, "an error comes with no key, not a typed nil: %#v", key)
				return
			}
			require.NoError(t, err)
			require.True(t, key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.want))
		})
	}
}

// TestWriteFileAtomicFailures: a write that cannot happen leaves what was
// there, and no temporary file.
func TestWriteFileAtomicFailures(t *testing.T) {
	t.Run("fail/missing directory", func(t *testing.T) {
		err := WriteFileAtomic(filepath.Join(t.TempDir(), "missing", "f"), []byte("x"), 0o600)
		require.ErrorContains(t, err, "write ")
	})
	t.Run("fail/target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "key")
		require.NoError(t, os.Mkdir(target, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(target, "inside"), nil, 0o600))
		err := WriteFileAtomic(target, []byte("x"), 0o600)
		require.ErrorContains(t, err, "write "+target)
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "the temporary file is removed")
	})
	t.Run("ok/mode is the one asked for", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "f")
		require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
		require.NoError(t, WriteFileAtomic(path, []byte("new"), 0o600))
		info, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	})
}
