package shm

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
)

// ProcStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat). The command name (field 2) may contain
// spaces and ')', so fields are counted after the last ')'.
func ProcStartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// procStat returns (starttime, state) of pid.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("fdp/shm: process %d: %w", pid, err)
	}
	st, state, err := parseStat(b)
	if err != nil {
		return 0, 0, fmt.Errorf("fdp/shm: /proc/%d/stat: %w", pid, err)
	}
	return st, state, nil
}

// parseStat extracts (starttime, state) from the contents of a
// /proc/<pid>/stat file. comm (field 2) may contain spaces and ')': fields
// are counted after the last ')'.
func parseStat(b []byte) (uint64, byte, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed: no ')'")
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state); field 22 (starttime) is fields[19].
	if len(fields) < 20 || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("malformed: %d fields after comm", len(fields))
	}
	st, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed starttime: %w", err)
	}
	return st, fields[0][0], nil
}

var self struct {
	once  sync.Once
	start uint64
}

// SelfStartTime returns this process's start time (cached). It is 0 only if
// /proc is unavailable, in which case no creator can be proven alive.
func SelfStartTime() uint64 {
	self.once.Do(func() { self.start, _ = ProcStartTime(os.Getpid()) })
	return self.start
}

// ProcessAlive reports whether process pid exists, is not a zombie, and
// started at start (a recycled pid belongs to another process: dead for us).
func ProcessAlive(pid uint32, start uint64) bool {
	if pid == 0 {
		return false
	}
	st, state, err := procStat(int(pid))
	if err != nil || state == 'Z' || state == 'X' {
		return false
	}
	return st == start
}

// ProcessStopped reports whether process pid exists and is stopped by a
// signal (SIGSTOP, SIGTSTP: state 'T') or by a tracer ('t').
func ProcessStopped(pid int) bool {
	_, state, err := procStat(pid)
	return err == nil && (state == 'T' || state == 't')
}
