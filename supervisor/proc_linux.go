//go:build linux

package supervisor

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// sysProcAttr makes a child receive SIGKILL when the thread that forked it
// (the supervisor's spawner thread, which lives as long as Run) goes away, so
// children never outlive a killed supervisor. Children stay in the
// supervisor's process group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// processStopped reports whether process pid is stopped by a signal
// (SIGSTOP: state 'T' in /proc/<pid>/stat) or by a tracer ('t'). It is
// logged with a hang kill as an extra signal.
func processStopped(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The command name (field 2) may contain spaces and ')': the state is
	// the first field after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := bytes.Fields(b[i+1:])
	return len(f) > 0 && (string(f[0]) == "T" || string(f[0]) == "t")
}
