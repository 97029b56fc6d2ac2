package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// peerCredentials is gRPC transport "security" for the unix socket: it
// records the connecting process's kernel credentials (SO_PEERCRED) and
// pins the process with a pidfd, so attestation can later prove that the
// pid it inspected still belongs to the process that connected.
type peerCredentials struct{}

// peerInfo is the AuthInfo of a Workload API connection.
type peerInfo struct {
	credentials.CommonAuthInfo
	pid, uid, gid int
	// pidfd refers to the connecting process; -1 if the kernel has no
	// pidfd_open (before Linux 5.3).
	pidfd int
}

func (peerInfo) AuthType() string { return "peercred" }

// alive reports whether the process that connected is still running. Once
// it has exited its pid may be reused by another process, so anything read
// from /proc/<pid> afterwards cannot be trusted.
func (p peerInfo) alive() bool {
	if p.pidfd < 0 {
		// Without pidfds only "some process has this pid" can be checked.
		err := unix.Kill(p.pid, 0)
		return err == nil || errors.Is(err, unix.EPERM)
	}
	return unix.PidfdSendSignal(p.pidfd, 0, nil, 0) == nil
}

func (peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("workload API: %T is not a unix socket connection", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("workload API: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("workload API: peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("workload API: peer credentials: %w", credErr)
	}
	info := peerInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
		pid:            int(cred.Pid), uid: int(cred.Uid), gid: int(cred.Gid), pidfd: -1,
	}
	if fd, err := unix.PidfdOpen(info.pid, 0); err == nil {
		info.pidfd = fd
	}
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

func (peerCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workload API: peer credentials are server-side only")
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (peerCredentials) Clone() credentials.TransportCredentials { return peerCredentials{} }

//nolint:staticcheck // required by the interface
func (peerCredentials) OverrideServerName(string) error { return nil }
