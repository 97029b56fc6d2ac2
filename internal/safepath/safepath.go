// Package safepath checks that a directory treaty keeps its database, keys
// or sockets in can be changed only by treaty's own user and root. Another
// local user who can write the directory, or any directory above it, can
// swap the database, the CA's keys or a socket for their own; treaty
// refuses to start there rather than find out later.
package safepath

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Dir is a directory to check.
type Dir struct {
	// Path is the directory; it must exist.
	Path string
	// Name says which directory this is in messages, e.g. "data_dir".
	Name string
	// Holds says what another user could replace, e.g. "the socket".
	Holds string
	// Mode is the mode the fix suggests for the directory itself, e.g.
	// 0o700.
	Mode fs.FileMode
	// Sticky accepts the directory itself when others can write it but it
	// has the sticky bit, like /tmp: others cannot remove or rename what
	// treaty creates there. Directories above Path are always accepted
	// when sticky.
	Sticky bool
}

// Check returns an error when a user other than treaty's (the effective
// user) and root owns d.Path or a directory above it, or when group or
// others can write one of them (mode & 0o022) without the sticky bit, or,
// unless d.Sticky, d.Path itself even with it. A symbolic link on the way
// must be owned by treaty's user or root, since whoever owns it can point
// it elsewhere. The error names the directory, its mode and the fix.
// shared reports a sticky d.Path that others can write, accepted because
// of d.Sticky; the caller should warn.
func Check(d Dir) (shared bool, err error) {
	if err := checkLinks(d); err != nil {
		return false, err
	}
	resolved, err := filepath.EvalSymlinks(d.Path)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", d.Name, d.Path, err)
	}
	info, err := os.Stat(resolved)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", d.Name, d.Path, err)
	}
	if err := checkOwner(d, resolved, info); err != nil {
		return false, err
	}
	if writableByOthers(info) {
		if !d.Sticky || info.Mode()&fs.ModeSticky == 0 {
			return false, fmt.Errorf("%s %s is writable by group or others (mode %s): any local user could replace %s. "+
				"Run chmod %o %s, or choose a directory only treaty's user can write", d.Name, d.Path, info.Mode(), d.Holds, d.Mode.Perm(), d.Path)
		}
		shared = true
	}
	return shared, checkParents(d, resolved)
}

// checkParents checks every directory above dir, up to the root.
func checkParents(d Dir, dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s %s: %w", d.Name, d.Path, err)
		}
		if err := checkOwner(d, p, info); err != nil {
			return err
		}
		if writableByOthers(info) && info.Mode()&fs.ModeSticky == 0 {
			return fmt.Errorf("%s %s: the directory above it, %s, is writable by group or others (mode %s), so any local user could "+
				"replace %s with their own. Run chmod go-w %s, or choose a %s whose parent directories only root and treaty's user can write",
				d.Name, d.Path, p, info.Mode(), d.Holds, p, d.Name)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// checkLinks checks the owner of every symbolic link in d.Path as written.
func checkLinks(d Dir) error {
	abs, err := filepath.Abs(d.Path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", d.Name, d.Path, err)
	}
	for p := abs; p != filepath.Dir(p); p = filepath.Dir(p) {
		info, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("%s %s: %w", d.Name, d.Path, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			if err := checkOwner(d, p, info); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkOwner refuses a path owned by someone other than treaty's user and
// root.
func checkOwner(d Dir, p string, info fs.FileInfo) error {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := os.Geteuid()
	if int(st.Uid) == uid || st.Uid == 0 {
		return nil
	}
	what, chown := "it", "chown"
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		what, chown = "the symbolic link "+p, "chown -h"
	case p != d.Path:
		what = p
	}
	return fmt.Errorf("%s %s: %s belongs to user %d, not to treaty's user (%d) or root, and that user could replace %s. "+
		"Choose a %s owned by treaty's user (or %s %d %s)", d.Name, d.Path, what, st.Uid, uid, d.Holds, d.Name, chown, uid, p)
}

func writableByOthers(info fs.FileInfo) bool {
	return info.Mode().Perm()&0o022 != 0
}
