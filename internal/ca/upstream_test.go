package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/keystore"
)

// writeRoot creates a self-signed upstream root and writes its certificate
// and key as PEM files.
func writeRoot(t *testing.T, dir string, notAfter time.Time) (certFile, keyFile string, root *x509.Certificate) {
	key, err := ECP256.GenerateKey()
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Upstream Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	root, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "root.pem"), filepath.Join(dir, "root.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	keys, err := keystore.Open(filepath.Join(dir, "tmpkeys"))
	require.NoError(t, err)
	require.NoError(t, keys.Save("root", key))
	require.NoError(t, os.Rename(keys.Path("root"), keyFile))
	return certFile, keyFile, root
}

func TestUpstreamAuthority(t *testing.T) {
	e := newEnv(t)
	e.now = time.Now()
	certFile, keyFile, root := writeRoot(t, t.TempDir(), e.now.Add(12*time.Hour))
	up, err := LoadUpstream(certFile, keyFile, "")
	require.NoError(t, err)
	e.cfg.Upstream = up
	c := e.open()

	b := c.Bundle()
	require.Len(t, b.X509Authorities(), 1)
	require.True(t, b.X509Authorities()[0].Equal(root), "the bundle publishes the upstream root")

	st := c.State(datastore.KindX509)
	require.Equal(t, hexSKID(root), st.Active.UpstreamSKID)
	require.False(t, st.Active.ExpiresAt.After(root.NotAfter), "intermediate outlives the upstream CA")

	_, err = c.Prepare(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	require.Len(t, c.Bundle().X509Authorities(), 1, "local intermediates are not published")
	_, _, err = c.Activate(t.Context(), datastore.KindX509, c.State(datastore.KindX509).Prepared.ID)
	require.NoError(t, err)
	_, err = c.Taint(t.Context(), datastore.KindX509, st.Active.ID)
	require.ErrorIs(t, err, ErrFailedPrecondition)
	require.ErrorContains(t, err, "upstream")
}

func TestLoadUpstreamErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeRoot(t, dir, time.Now().Add(time.Hour))
	otherCert, otherKey, _ := writeRoot(t, t.TempDir(), time.Now().Add(time.Hour))
	_, err := LoadUpstream(certFile, otherKey, "")
	require.ErrorContains(t, err, "does not match the certificate")
	_, err = LoadUpstream(certFile, keyFile, otherCert)
	require.ErrorContains(t, err, "does not chain to the upstream roots")
	_, err = LoadUpstream(filepath.Join(dir, "missing.pem"), keyFile, "")
	require.ErrorContains(t, err, "upstream cert_file")
}

// TestTaintRevokeUpstream: after the upstream CA is replaced, the upstream
// that signed the old authority is tainted and revoked as SPIRE's
// LocalAuthority API does it; the one that signs the active authority, or
// any other, is refused.
func TestTaintRevokeUpstream(t *testing.T) {
	e := newEnv(t)
	e.now = time.Now()
	certFile, keyFile, first := writeRoot(t, t.TempDir(), e.now.Add(12*time.Hour))
	up, err := LoadUpstream(certFile, keyFile, "")
	require.NoError(t, err)
	e.cfg.Upstream = up
	c := e.open()
	_, err = c.TaintUpstream(t.Context(), hexSKID(first))
	require.ErrorIs(t, err, ErrUnknownAuthority, "it signs the active authority")

	// The operator replaces the upstream CA and rotates.
	certFile, keyFile, second := writeRoot(t, t.TempDir(), e.now.Add(12*time.Hour))
	if e.cfg.Upstream, err = LoadUpstream(certFile, keyFile, ""); err != nil {
		t.Fatal(err)
	}
	c = e.open()
	prepared, err := c.Prepare(t.Context(), datastore.KindX509)
	require.NoError(t, err)
	_, _, err = c.Activate(t.Context(), datastore.KindX509, prepared.ID)
	require.NoError(t, err)
	old := c.State(datastore.KindX509).Old

	_, err = c.RevokeUpstream(t.Context(), hexSKID(first))
	require.ErrorIs(t, err, ErrFailedPrecondition, "taint comes first")
	_, err = c.TaintUpstream(t.Context(), hexSKID(second))
	require.ErrorIs(t, err, ErrUnknownAuthority)
	_, err = c.TaintUpstream(t.Context(), "00ff")
	require.ErrorContains(t, err, "did not sign the old X.509 authority")

	got, err := c.TaintUpstream(t.Context(), strings.ToUpper(hexSKID(first)))
	require.NoError(t, err)
	require.Equal(t, hexSKID(first), got, "answered in lower case, as SPIRE does")
	require.True(t, c.IsTainted(datastore.KindX509, old.ID))
	_, err = c.TaintUpstream(t.Context(), hexSKID(first))
	require.ErrorIs(t, err, ErrFailedPrecondition, "already tainted")

	_, err = c.RevokeUpstream(t.Context(), hexSKID(first))
	require.NoError(t, err)
	require.Nil(t, c.State(datastore.KindX509).Old)

	e.cfg.Upstream = nil
	_, err = e.open().TaintUpstream(t.Context(), hexSKID(first))
	require.ErrorContains(t, err, "upstream authority is not configured")
}
