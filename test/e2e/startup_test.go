package e2e

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // the lock-holding helper process opens the database
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

// holdLockEnv turns the test binary into a helper process that holds an
// exclusive lock on the database named by it until its stdin closes.
const holdLockEnv = "TREATY_E2E_HOLD_LOCK"

func init() {
	if path := os.Getenv(holdLockEnv); path != "" {
		os.Exit(holdLock(path))
	}
}

func holdLock(path string) int {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestBadDatabaseStartsNothing runs the real binary on a database with
// garbage in it, and on one another process holds locked: each exits
// non-zero at once with the file and the fix, leaves no socket, and does
// not change the file.
func TestBadDatabaseStartsNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, db string) (release func())
		msg   string
		// startsAfter: once released, the same data dir starts.
		startsAfter bool
	}{
		{name: "fail/garbage in the database", msg: "is not a SQLite database", spoil: func(t *testing.T, db string) func() {
			require.NoError(t, os.WriteFile(db, bytes.Repeat([]byte("garbage!"), 2048), 0o600))
			return func() {}
		}},
		{name: "fail/database locked by another process", msg: "is locked by another process (waited 2s)", startsAfter: true, spoil: func(t *testing.T, db string) func() {
			helper := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
			helper.Env = append(os.Environ(), holdLockEnv+"="+db)
			stdin, err := helper.StdinPipe()
			require.NoError(t, err)
			stdout, err := helper.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, helper.Start())
			line, err := bufio.NewReader(stdout).ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "locked\n", line)
			return func() {
				require.NoError(t, stdin.Close())
				require.NoError(t, helper.Wait())
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, "alpha.test", "")
			s.start()
			s.stop()
			db := filepath.Join(s.dataDir, "treaty.db")
			release := tc.spoil(t, db)
			before, err := os.ReadFile(db)
			require.NoError(t, err)

			start := time.Now()
			_, stderr, err := runCmd(treatyBin, "server", "run", "-config", s.config)
			require.Error(t, err, "the server must not start")
			require.Less(t, time.Since(start), 15*time.Second, "start-up gives up quickly")
			require.Contains(t, stderr, "database "+db+" "+tc.msg)
			require.Contains(t, stderr, "treaty has not changed it")
			for _, sock := range []string{s.socket, s.workload} {
				_, err := os.Lstat(sock)
				require.ErrorIs(t, err, fs.ErrNotExist, "no socket is left behind")
			}
			after, err := os.ReadFile(db)
			require.NoError(t, err)
			require.True(t, bytes.Equal(before, after), "the database file was changed")
			release()
			if tc.startsAfter {
				s.start()
			}
		})
	}
}
