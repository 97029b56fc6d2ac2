package keystore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore/sqlite"
	"github.com/treatyhq/treaty/internal/keystore"
)

func sealKey(t *testing.T, b byte) []byte {
	t.Helper()
	k := make([]byte, keystore.SealKeySize)
	for i := range k {
		k[i] = b
	}
	return k
}

func TestSealedKeysRoundTripAndStaySealed(t *testing.T) {
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "treaty.db"))
	require.NoError(t, err)
	defer db.Close()
	s, err := keystore.OpenSealed(db, sealKey(t, 1), nil)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.NoError(t, s.Save("x509-aa", key))

	got, err := s.Load("x509-aa")
	require.NoError(t, err)
	require.True(t, key.Equal(got))

	stored, err := db.SealedKey(t.Context(), "x509-aa")
	require.NoError(t, err)
	scalar, err := key.Bytes()
	require.NoError(t, err)
	require.NotContains(t, string(stored), string(scalar), "the private scalar is not stored in the clear")

	other, err := keystore.OpenSealed(db, sealKey(t, 2), nil)
	require.NoError(t, err)
	_, err = other.Load("x509-aa")
	require.ErrorContains(t, err, "does not open with this ca.key_seal_file: every replica must use the same seal key")

	// A sealed key moved under another name does not open: the name is
	// bound to it.
	require.NoError(t, db.PutSealedKey(t.Context(), "x509-bb", stored))
	_, err = s.Load("x509-bb")
	require.ErrorContains(t, err, "does not open")

	_, err = s.Load("x509-missing")
	require.ErrorIs(t, err, keystore.ErrNotFound)
	names, err := s.List()
	require.NoError(t, err)
	require.Empty(t, names, "keys younger than SettleTime are not listed as orphan candidates")
	require.NoError(t, s.Delete("x509-aa"))
	_, err = s.Load("x509-aa")
	require.ErrorIs(t, err, keystore.ErrNotFound)
}

// A server that kept its keys on disk keeps its authorities when it starts
// sealing them: a key missing from the database is taken from the key
// directory and sealed into it.
func TestSealedAdoptsKeysFromTheKeyDirectory(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "treaty.db"))
	require.NoError(t, err)
	defer db.Close()
	legacy, err := keystore.Open(filepath.Join(dir, "keys"))
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.NoError(t, legacy.Save("jwt-cc", key))

	s, err := keystore.OpenSealed(db, sealKey(t, 3), legacy)
	require.NoError(t, err)
	got, err := s.Load("jwt-cc")
	require.NoError(t, err)
	require.True(t, key.Equal(got))
	_, err = db.SealedKey(t.Context(), "jwt-cc")
	require.NoError(t, err, "now sealed in the database")

	noLegacy, err := keystore.OpenSealed(db, sealKey(t, 3), nil)
	require.NoError(t, err)
	got, err = noLegacy.Load("jwt-cc")
	require.NoError(t, err, "another replica, without the key directory, loads it")
	require.True(t, key.Equal(got))
}

func TestReadSealKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		require.NoError(t, os.Chmod(p, mode))
		return p
	}
	good := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	k, err := keystore.ReadSealKey(write("good", good+"\n", 0o600))
	require.NoError(t, err)
	require.Len(t, k, keystore.SealKeySize)
	_, err = keystore.ReadSealKey(write("short", good[:10], 0o600))
	require.ErrorContains(t, err, "must hold 64 hexadecimal digits (make it with: openssl rand -hex 32")
	_, err = keystore.ReadSealKey(write("open", good, 0o644))
	require.ErrorContains(t, err, "only its owner may read it; run chmod 600")
	_, err = keystore.ReadSealKey(filepath.Join(dir, "missing"))
	require.ErrorContains(t, err, "ca.key_seal_file")
}
