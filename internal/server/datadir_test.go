package server

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/config"
)

// TestRefusesDirectoriesOthersCanWrite starts on real directories whose
// mode or owner lets another local user swap the database, the keys or a
// socket: start-up stops with the path, the mode and the fix, and creates
// nothing in the directory.
func TestRefusesDirectoriesOthersCanWrite(t *testing.T) {
	const otherUID = 4242
	for _, tc := range []struct {
		name string
		// dir picks the directory to spoil, before the server starts.
		dir  func(cfg *config.Config) string
		mode fs.FileMode
		// uid, when set, owns the directory (needs root).
		uid int
		err []string
	}{
		{name: "ok/private data dir", dir: dataDir, mode: 0o700},
		{name: "fail/world-writable data dir", dir: dataDir, mode: 0o777,
			err: []string{"data_dir %s is writable by group or others (mode drwxrwxrwx): any local user could replace the database and the CA's private keys", "Run chmod 700 %s"}},
		{name: "fail/group-writable data dir", dir: dataDir, mode: 0o770, err: []string{"data_dir %s is writable by group or others (mode drwxrwx---)"}},
		{name: "fail/sticky data dir", dir: dataDir, mode: 0o777 | fs.ModeSticky, err: []string{"data_dir %s is writable by group or others (mode dtrwxrwxrwx)"}},
		{name: "fail/data dir of another user", dir: dataDir, mode: 0o700, uid: otherUID, err: []string{"data_dir %s: it belongs to user 4242, not to treaty's user"}},
		{name: "fail/world-writable admin socket dir", dir: adminDir, mode: 0o777,
			err: []string{"admin_socket directory %s is writable by group or others (mode drwxrwxrwx): any local user could replace the socket", "Run chmod 700 %s"}},
		{name: "fail/world-writable workload socket dir", dir: workloadDir, mode: 0o777, err: []string{"workload_socket directory %s is writable by group or others", "Run chmod 755 %s"}},
		{name: "ok/sticky workload socket dir", dir: workloadDir, mode: 0o777 | fs.ModeSticky},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.uid != 0 && os.Geteuid() != 0 {
				t.Skip("only root can give a directory to another user")
			}
			cfg := testConfig(t)
			cfg.AdminSocket = filepath.Join(filepath.Dir(cfg.AdminSocket), "private", "admin.sock")
			dir := tc.dir(cfg)
			require.NoError(t, os.MkdirAll(dir, 0o700))
			require.NoError(t, os.Chmod(dir, tc.mode))
			if tc.uid != 0 {
				require.NoError(t, os.Chown(dir, tc.uid, tc.uid))
			}
			s, err := New(t.Context(), cfg, nil)
			if tc.err == nil {
				require.NoError(t, err)
				s.close()
				return
			}
			for _, phrase := range tc.err {
				require.ErrorContains(t, err, fmtPath(phrase, dir))
			}
			for _, sock := range []string{cfg.AdminSocket, cfg.WorkloadSocket} {
				_, err := os.Lstat(sock)
				require.ErrorIs(t, err, fs.ErrNotExist, "no socket is left behind")
			}
			if tc.dir(cfg) == cfg.DataDir {
				entries, err := os.ReadDir(dir)
				require.NoError(t, err)
				require.Empty(t, entries, "nothing is created in a data dir that is refused")
			}
			info, err := os.Stat(dir)
			require.NoError(t, err)
			require.Equal(t, tc.mode, info.Mode()&(fs.ModePerm|fs.ModeSticky), "the directory is left as it was")
		})
	}
}

func dataDir(cfg *config.Config) string     { return cfg.DataDir }
func adminDir(cfg *config.Config) string    { return filepath.Dir(cfg.AdminSocket) }
func workloadDir(cfg *config.Config) string { return filepath.Dir(cfg.WorkloadSocket) }

// fmtPath puts path in each %s of phrase.
func fmtPath(phrase, path string) string {
	return strings.ReplaceAll(phrase, "%s", path)
}

// TestRefusesKeysOthersCanRead: a key file made 0644 in the data dir's key
// store stops start-up, naming the file and the fix; chmod 600 starts it.
func TestRefusesKeysOthersCanRead(t *testing.T) {
	cfg := testConfig(t)
	s, err := New(t.Context(), cfg, nil)
	require.NoError(t, err)
	s.close()
	keys, err := filepath.Glob(filepath.Join(cfg.DataDir, KeysDir, "*.key.pem"))
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	require.NoError(t, os.Chmod(keys[0], 0o644))

	_, err = New(t.Context(), cfg, nil)
	require.ErrorContains(t, err, filepath.Base(keys[0])+" (mode -rw-r--r--)")
	require.ErrorContains(t, err, "Run chmod 600 "+filepath.Join(cfg.DataDir, KeysDir)+"/*.key.pem")
	for _, sock := range []string{cfg.AdminSocket, cfg.WorkloadSocket} {
		_, err := os.Lstat(sock)
		require.ErrorIs(t, err, fs.ErrNotExist, "no socket is left behind")
	}

	require.NoError(t, os.Chmod(keys[0], 0o600))
	s, err = New(t.Context(), cfg, nil)
	require.NoError(t, err, "fixed as the message says, the server starts")
	s.close()
}
