package keystore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSaveLoadDelete(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "keys"))
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.NoError(t, s.Save("x509-abc", key))

	info, err := os.Stat(s.Path("x509-abc"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	dirInfo, err := os.Stat(s.Dir())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), dirInfo.Mode().Perm())

	got, err := s.Load("x509-abc")
	require.NoError(t, err)
	require.True(t, key.Equal(got))

	names, err := s.List()
	require.NoError(t, err)
	require.Equal(t, []string{"x509-abc"}, names)

	require.NoError(t, s.Delete("x509-abc"))
	require.NoError(t, s.Delete("x509-abc"))
	_, err = s.Load("x509-abc")
	require.ErrorIs(t, err, ErrNotFound)
}

func TestSaveRejectsBadNames(t *testing.T) {
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for _, name := range []string{"", "../escape", "a/b", ".hidden"} {
		t.Run("fail/"+name, func(t *testing.T) {
			require.Error(t, s.Save(name, key))
		})
	}
}

func TestWriteFileAtomicLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	require.NoError(t, WriteFileAtomic(path, []byte("one"), 0o600))
	require.NoError(t, WriteFileAtomic(path, []byte("two"), 0o600))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "two", string(data))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
}

func TestParsePrivateKeyPEM(t *testing.T) {
	_, err := ParsePrivateKeyPEM([]byte("not pem"))
	require.ErrorContains(t, err, "no PEM private key")
}

func TestOpenRemovesInterruptedWrites(t *testing.T) {
	dir := t.TempDir()
	leftover := filepath.Join(dir, ".x509-aa"+keySuffix+".tmp-123")
	require.NoError(t, os.WriteFile(leftover, []byte("half a key"), 0o600))
	other := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(other, nil, 0o600))
	_, err := Open(dir)
	require.NoError(t, err)
	_, err = os.Stat(leftover)
	require.True(t, os.IsNotExist(err))
	_, err = os.Stat(other)
	require.NoError(t, err, "only interrupted key writes are removed")
}
