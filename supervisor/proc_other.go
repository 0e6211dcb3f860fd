//go:build !linux

package supervisor

import "syscall"

// sysProcAttr has no parent-death signal outside Linux.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

// processStopped is unknown here: never.
func processStopped(int) bool { return false }
