package socket

import "golang.org/x/sys/unix"

// peerCredentials reads the connected peer's pid, uid and gid.
func peerCredentials(fd int) (pid, uid, gid int, err error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, 0, 0, err
	}
	return int(cred.Pid), int(cred.Uid), int(cred.Gid), nil
}

// openPidfd pins process pid, or returns -1 if the kernel cannot (before
// Linux 5.3).
func openPidfd(pid int) int {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1
	}
	return fd
}

// pidfdAlive reports whether the process pidfd refers to still runs.
func pidfdAlive(pidfd int) bool { return unix.PidfdSendSignal(pidfd, 0, nil, 0) == nil }
