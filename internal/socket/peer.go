package socket

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// PeerCredentials is gRPC transport "security" for a unix socket: it
// records the connecting process's kernel credentials (SO_PEERCRED on
// Linux, LOCAL_PEERCRED and LOCAL_PEERPID on macOS) and, on Linux, pins
// the process with a pidfd, so that whoever inspects the process later can
// prove the pid still belongs to the process that connected.
type PeerCredentials struct{}

// PeerInfo is the AuthInfo of a connection accepted with PeerCredentials.
type PeerInfo struct {
	credentials.CommonAuthInfo
	PID, UID, GID int
	// pidfd refers to the connecting process; -1 if the kernel has no
	// pidfd_open (before Linux 5.3).
	pidfd int
}

// NewPeerInfo describes a process without a pidfd (for tests).
func NewPeerInfo(pid, uid, gid int) PeerInfo {
	return PeerInfo{PID: pid, UID: uid, GID: gid, pidfd: -1}
}

// Peer returns the credentials of the caller of a gRPC call served with
// PeerCredentials.
func Peer(ctx context.Context) (PeerInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return PeerInfo{}, false
	}
	info, ok := p.AuthInfo.(PeerInfo)
	return info, ok
}

// AuthType names the credentials.
func (PeerInfo) AuthType() string { return "peercred" }

// Alive reports whether the process that connected is still running. Once
// it has exited its pid may be reused by another process, so anything read
// from /proc/<pid> afterwards cannot be trusted.
func (p PeerInfo) Alive() bool {
	if p.pidfd < 0 {
		// Without pidfds only "some process has this pid" can be checked.
		err := unix.Kill(p.PID, 0)
		return err == nil || errors.Is(err, unix.EPERM)
	}
	return pidfdAlive(p.pidfd)
}

// ServerHandshake reads the peer's credentials; it does no encryption.
func (PeerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("unix socket: %T is not a unix socket connection", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("unix socket: peer credentials: %w", err)
	}
	info := PeerInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, pidfd: -1}
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		info.PID, info.UID, info.GID, credErr = peerCredentials(int(fd))
	}); err != nil {
		return nil, nil, fmt.Errorf("unix socket: peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("unix socket: peer credentials: %w", credErr)
	}
	info.pidfd = openPidfd(info.PID)
	return &pidfdConn{Conn: conn, pidfd: info.pidfd}, info, nil
}

// pidfdConn closes the connection's pidfd with it.
type pidfdConn struct {
	net.Conn
	pidfd int
	once  sync.Once
}

func (c *pidfdConn) Close() error {
	c.once.Do(func() {
		if c.pidfd >= 0 {
			_ = unix.Close(c.pidfd)
		}
	})
	return c.Conn.Close()
}

// ClientHandshake is not supported: PeerCredentials is for servers.
func (PeerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("unix socket: peer credentials are server-side only")
}

// Info names the protocol.
func (PeerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

// Clone returns a copy.
func (PeerCredentials) Clone() credentials.TransportCredentials { return PeerCredentials{} }

// OverrideServerName does nothing; the interface requires it.
//
//nolint:staticcheck // required by the interface
func (PeerCredentials) OverrideServerName(string) error { return nil }
