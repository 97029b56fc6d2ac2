package socket

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestListenChecksDirectory(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode fs.FileMode
		err  string
		warn bool
	}{
		{name: "ok/private", mode: 0o700},
		{name: "ok/readable by others", mode: 0o755},
		{name: "ok/sticky like /tmp warns", mode: 0o777 | fs.ModeSticky, warn: true},
		{name: "fail/world-writable", mode: 0o777, err: "is writable by group or others (mode drwxrwxrwx): any local user could replace the socket"},
		{name: "fail/group-writable", mode: 0o770, err: "is writable by group or others (mode drwxrwx---)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, err := os.MkdirTemp("", "treaty-sock") //nolint:usetesting // unix socket paths must stay short; t.TempDir() paths can exceed the limit
			require.NoError(t, err)
			t.Cleanup(func() { _ = os.RemoveAll(base) })
			dir := filepath.Join(base, "d")
			require.NoError(t, os.Mkdir(dir, 0o700))
			require.NoError(t, os.Chmod(dir, tc.mode))
			var logs bytes.Buffer
			path := filepath.Join(dir, "admin.sock")
			l, err := Listen(t.Context(), Config{Path: path, Name: "admin_socket", DirMode: 0o700, Mode: 0o600, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if tc.err != "" {
				require.ErrorContains(t, err, "admin_socket directory "+dir+" "+tc.err)
				require.ErrorContains(t, err, "chmod 700 "+dir)
				_, statErr := os.Lstat(path)
				require.ErrorIs(t, statErr, fs.ErrNotExist, "no socket is created")
				info, err := os.Stat(dir)
				require.NoError(t, err)
				require.Equal(t, tc.mode, info.Mode()&(fs.ModePerm|fs.ModeSticky), "the directory is left as it was")
				return
			}
			require.NoError(t, err)
			require.NoError(t, l.Close())
			if tc.warn {
				require.Contains(t, logs.String(), "socket directory is writable by others; its sticky bit keeps them from removing the socket")
				require.Contains(t, logs.String(), "socket=admin_socket path="+dir)
			} else {
				require.Empty(t, logs.String())
			}
		})
	}
}
