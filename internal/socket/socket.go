// Package socket owns the unix sockets treaty serves its APIs on: where they
// are by default, and creating them: the directory with the right mode, a
// stale socket left by a dead process removed, a live one never taken over.
package socket

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/treatyhq/treaty/internal/safepath"
)

// Config describes one socket.
type Config struct {
	// Path is the socket file.
	Path string
	// Name says which socket this is in errors, e.g. "admin_socket".
	Name string
	// DirMode is used when the directory has to be created.
	DirMode fs.FileMode
	// Mode is the socket file's mode.
	Mode fs.FileMode
	// Logger receives the warning about a sticky directory others can
	// write; nil discards it.
	Logger *slog.Logger
}

// Listen creates the socket's directory if missing, refuses a directory
// that another user can write (a sticky one like /tmp only gets a
// warning: others cannot remove the socket there), removes a stale socket
// file and listens.
func Listen(ctx context.Context, cfg Config) (net.Listener, error) {
	dir := filepath.Dir(cfg.Path)
	if err := os.MkdirAll(dir, cfg.DirMode); err != nil {
		return nil, fmt.Errorf("create %s directory: %w", cfg.Name, err)
	}
	shared, err := safepath.Check(safepath.Dir{Path: dir, Name: cfg.Name + " directory", Holds: "the socket, and answer its callers", Mode: cfg.DirMode, Sticky: true})
	if err != nil {
		return nil, err
	}
	if shared && cfg.Logger != nil {
		cfg.Logger.Warn("socket directory is writable by others; its sticky bit keeps them from removing the socket, but a directory only treaty's user can write is safer",
			attrSocket, cfg.Name, attrPath, dir)
	}
	if err := removeStale(ctx, cfg); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s: %w", cfg.Name, cfg.Path, err)
	}
	if err := os.Chmod(cfg.Path, cfg.Mode); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("set %s mode: %w", cfg.Name, err)
	}
	return l, nil
}

// removeStale deletes a socket file left by a process that died, and
// refuses to touch one that a live process still serves.
func removeStale(ctx context.Context, cfg Config) error {
	info, err := os.Lstat(cfg.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s %s: %w", cfg.Name, cfg.Path, err)
	}
	if info.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s path %s exists and is not a socket: remove it or choose another %s", cfg.Name, cfg.Path, cfg.Name)
	}
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "unix", cfg.Path)
	if err == nil {
		_ = conn.Close()
		return fmt.Errorf("%s %s is in use: is another treaty server running? Stop it or choose another %s", cfg.Name, cfg.Path, cfg.Name)
	}
	if err := os.Remove(cfg.Path); err != nil {
		return fmt.Errorf("remove stale %s %s: %w", cfg.Name, cfg.Path, err)
	}
	return nil
}

// Log attribute keys.
const (
	attrSocket = "socket"
	attrPath   = "path"
)
