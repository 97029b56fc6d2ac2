package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUnsafeDirectoriesStartNothing runs the real binary on a data dir and
// a socket dir that any local user can write: it exits non-zero with the
// path, the mode and the fix, and leaves no socket, lock or database.
func TestUnsafeDirectoriesStartNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  func(s *server) string
		msg  string
	}{
		{name: "fail/world-writable data dir", dir: func(s *server) string { return s.dataDir },
			msg: "is writable by group or others (mode drwxrwxrwx): any local user could replace the database and the CA's private keys. Run chmod 700 "},
		{name: "fail/world-writable workload socket dir", dir: func(s *server) string { return filepath.Dir(s.workload) },
			msg: "is writable by group or others (mode drwxrwxrwx): any local user could replace the socket, and answer its callers. Run chmod 755 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, "alpha.test", "")
			dir := tc.dir(s)
			require.NoError(t, os.MkdirAll(dir, 0o700))
			require.NoError(t, os.Chmod(dir, 0o777))

			_, stderr, err := runCmd(treatyBin, "server", "run", "-config", s.config)
			require.Error(t, err, "the server must not start")
			require.Contains(t, stderr, dir+" "+tc.msg+dir)

			for _, sock := range []string{s.socket, s.workload} {
				_, err := os.Lstat(sock)
				require.ErrorIs(t, err, fs.ErrNotExist, "no socket is left behind")
			}
			if dir == s.dataDir {
				entries, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Empty(t, entries, "no lock, database or key is created")
			}
			info, err := os.Stat(dir)
			require.NoError(t, err)
			require.Equal(t, fs.FileMode(0o777), info.Mode().Perm(), "the directory is left as it was")

			// Fixed as the message says, the same configuration starts.
			require.NoError(t, os.Chmod(dir, 0o700))
			if dir != s.dataDir {
				require.NoError(t, os.Chmod(dir, 0o755))
			}
			s.start()
		})
	}
}
