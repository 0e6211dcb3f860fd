//go:build linux

package supervisor

import "syscall"

// sysProcAttr makes a child receive SIGKILL when the thread that forked it
// (the supervisor's spawner thread, which lives as long as Run) goes away, so
// children never outlive a killed supervisor. Children stay in the
// supervisor's process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
