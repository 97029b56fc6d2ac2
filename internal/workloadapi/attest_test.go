package workloadapi

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/treatyhq/treaty/internal/datastore"
	"github.com/treatyhq/treaty/internal/socket"
)

func TestAttestSelf(t *testing.T) {
	a := &attestor{procDir: "/proc"}
	info := socket.NewPeerInfo(os.Getpid(), os.Getuid(), os.Getgid())
	sel, err := a.attest(info)
	require.NoError(t, err)
	want := []string{"uid:" + strconv.Itoa(os.Getuid()), "gid:" + strconv.Itoa(os.Getgid())}
	if u, err := user.Current(); err == nil {
		want = append(want, "user:"+u.Username)
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	exe, err = filepath.EvalSymlinks(exe)
	require.NoError(t, err)
	want = append(want, "path:"+exe)
	for _, w := range want {
		require.Contains(t, sel, datastore.Selector{Type: "unix", Value: w})
	}
}

func TestAttestSupplementaryGroups(t *testing.T) {
	// A fake /proc entry under this process's own pid, so the liveness
	// check passes and the groups come from the fake status file.
	proc, pid := t.TempDir(), strconv.Itoa(os.Getpid())
	require.NoError(t, os.MkdirAll(filepath.Join(proc, pid), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(proc, pid, "status"), []byte("Name:\tx\nGroups:\t4 24 27 \nNgid:\t0\n"), 0o644))
	a := &attestor{procDir: proc}
	sel, err := a.attest(socket.NewPeerInfo(os.Getpid(), 4242, 4343))
	require.NoError(t, err)
	require.NotContains(t, sel, datastore.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())})
	for _, gid := range []string{"4343", "4", "24", "27"} {
		require.Contains(t, sel, datastore.Selector{Type: "unix", Value: "gid:" + gid})
	}
}

func TestAttestRefusesExitedProcess(t *testing.T) {
	a := &attestor{procDir: t.TempDir()}
	_, err := a.attest(socket.NewPeerInfo(999999, 1, 1))
	require.ErrorIs(t, err, errExited)
}

// Without /proc at all (macOS) a workload is attested by its uid and
// primary gid; with /proc, a pid missing from it has exited.
func TestGroupsWithoutProc(t *testing.T) {
	none := &attestor{procDir: filepath.Join(t.TempDir(), "no-proc")}
	gids, err := none.groups(1)
	require.NoError(t, err)
	require.Empty(t, gids)

	empty := &attestor{procDir: t.TempDir()}
	_, err = empty.groups(1)
	require.ErrorIs(t, err, errExited)
}
