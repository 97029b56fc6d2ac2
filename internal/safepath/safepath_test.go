package safepath

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// otherUID owns directories "of another user"; only root can chown to it.
const otherUID = 4242

func TestCheck(t *testing.T) {
	type setup func(t *testing.T, base string) string
	dir := func(mode fs.FileMode) setup {
		return func(t *testing.T, base string) string {
			p := filepath.Join(base, "d")
			require.NoError(t, os.Mkdir(p, 0o700))
			require.NoError(t, os.Chmod(p, mode))
			return p
		}
	}
	under := func(parentMode fs.FileMode) setup {
		return func(t *testing.T, base string) string {
			parent := filepath.Join(base, "parent")
			require.NoError(t, os.Mkdir(parent, 0o700))
			require.NoError(t, os.Chmod(parent, parentMode))
			return dir(0o700)(t, parent)
		}
	}
	cases := []struct {
		name   string
		setup  setup
		sticky bool
		root   bool // needs root to chown to another user
		err    []string
		shared bool
	}{
		{name: "ok/private", setup: dir(0o700)},
		{name: "ok/readable by others", setup: dir(0o755)},
		{name: "ok/under a sticky directory like /tmp", setup: under(0o777 | fs.ModeSticky)},
		{name: "fail/world-writable", setup: dir(0o777), err: []string{"/d is writable by group or others (mode drwxrwxrwx)", "could replace the things", "Run chmod 700 ", "only treaty's user can write"}},
		{name: "fail/group-writable", setup: dir(0o770), err: []string{"(mode drwxrwx---)"}},
		{name: "fail/sticky where not accepted", setup: dir(0o777 | fs.ModeSticky), err: []string{"(mode dtrwxrwxrwx)"}},
		{name: "ok/sticky where accepted is shared", setup: dir(0o777 | fs.ModeSticky), sticky: true, shared: true},
		{name: "fail/parent world-writable", setup: under(0o777), err: []string{"the directory above it,", "/parent, is writable by group or others (mode drwxrwxrwx)", "chmod go-w "}},
		{name: "fail/owned by another user", root: true, setup: func(t *testing.T, base string) string {
			p := dir(0o700)(t, base)
			require.NoError(t, os.Chown(p, otherUID, otherUID))
			return p
		}, err: []string{"it belongs to user 4242, not to treaty's user (0) or root", "chown 0 "}},
		{name: "fail/parent owned by another user", root: true, setup: func(t *testing.T, base string) string {
			p := under(0o755)(t, base)
			require.NoError(t, os.Chown(filepath.Dir(p), otherUID, otherUID))
			return p
		}, err: []string{"/parent belongs to user 4242"}},
		{name: "fail/symbolic link owned by another user", root: true, setup: func(t *testing.T, base string) string {
			target := dir(0o700)(t, base)
			link := filepath.Join(base, "link")
			require.NoError(t, os.Symlink(target, link))
			require.NoError(t, os.Lchown(link, otherUID, otherUID))
			return link
		}, err: []string{"the symbolic link ", "/link belongs to user 4242", "chown -h 0 "}},
		{name: "ok/symbolic link of our own", setup: func(t *testing.T, base string) string {
			link := filepath.Join(base, "link")
			require.NoError(t, os.Symlink(dir(0o700)(t, base), link))
			return link
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("only root can give a directory to another user")
			}
			base := t.TempDir()
			p := tc.setup(t, base)
			shared, err := Check(Dir{Path: p, Name: "test_dir", Holds: "the things", Mode: 0o700, Sticky: tc.sticky})
			if tc.err == nil {
				require.NoError(t, err)
				require.Equal(t, tc.shared, shared)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), "test_dir "+p)
			for _, phrase := range tc.err {
				require.Contains(t, err.Error(), phrase)
			}
		})
	}
}
