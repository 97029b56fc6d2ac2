package socket

import "golang.org/x/sys/unix"

// peerCredentials reads the connected peer's pid, uid and primary gid.
func peerCredentials(fd int) (pid, uid, gid int, err error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, 0, 0, err
	}
	if pid, err = unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID); err != nil {
		return 0, 0, 0, err
	}
	if cred.Ngroups > 0 {
		gid = int(cred.Groups[0])
	}
	return pid, int(cred.Uid), gid, nil
}

// openPidfd: macOS has no pidfds, so the pid is not pinned (Alive falls
// back to checking that some process has it).
func openPidfd(int) int { return -1 }

// pidfdAlive is never called without a pidfd.
func pidfdAlive(int) bool { return false }
