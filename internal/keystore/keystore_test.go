package keystore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io/fs"
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

// TestOpenRefusesKeysOthersCanRead: a key file others can read or write,
// or that another user owns, stops Open with the files, the fix and the
// advice to rotate; the mode is left as it was for the operator to see.
func TestOpenRefusesKeysOthersCanRead(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		mode  fs.FileMode
		uid   int // owner of the key file, when set (needs root)
		dir   fs.FileMode
		err   []string
		other bool // a file that is not a key, mode 0644, is ignored
	}{
		{name: "ok/0600", mode: 0o600},
		{name: "ok/0400", mode: 0o400},
		{name: "ok/other files are not keys", mode: 0o600, other: true},
		{name: "fail/0644", mode: 0o644, err: []string{"x509-a.key.pem (mode -rw-r--r--)", "Anyone on this host may have read the CA's private keys", "Run chmod 600 ", "/*.key.pem", "rotate the authorities"}},
		{name: "fail/0640 group-readable", mode: 0o640, err: []string{"x509-a.key.pem (mode -rw-r-----)"}},
		{name: "fail/0602 writable by others", mode: 0o602, err: []string{"x509-a.key.pem (mode -rw-----w-)"}},
		{name: "fail/owned by another user", mode: 0o600, uid: 4242, err: []string{"x509-a.key.pem (mode -rw-------)", "chown them to treaty's user"}},
		{name: "fail/key directory writable by others", mode: 0o600, dir: 0o777, err: []string{"key directory ", "is writable by group or others (mode drwxrwxrwx): any local user could replace the CA's private keys"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.uid != 0 && os.Geteuid() != 0 {
				t.Skip("only root can give a file to another user")
			}
			dir := filepath.Join(t.TempDir(), "keys")
			s, err := Open(dir)
			require.NoError(t, err)
			require.NoError(t, s.Save("x509-a", key))
			require.NoError(t, s.Save("jwt-b", key))
			path := s.Path("x509-a")
			require.NoError(t, os.Chmod(path, tc.mode))
			if tc.uid != 0 {
				require.NoError(t, os.Chown(path, tc.uid, tc.uid))
			}
			if tc.dir != 0 {
				require.NoError(t, os.Chmod(dir, tc.dir))
			}
			if tc.other {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), nil, 0o644))
			}
			_, err = Open(dir)
			if tc.err == nil {
				require.NoError(t, err)
				return
			}
			for _, phrase := range tc.err {
				require.ErrorContains(t, err, phrase)
			}
			require.NotContains(t, err.Error(), "jwt-b", "only the exposed files are named")
			info, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, tc.mode, info.Mode().Perm(), "the mode is left for the operator")
		})
	}
}
