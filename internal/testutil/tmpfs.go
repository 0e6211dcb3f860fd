package testutil

import (
	"fmt"
	"testing"

	"github.com/fdp-engine/fdp/shm"
	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs of size bytes on a fresh directory, makes it
// shm.Dir for the test (segments are created there) and unmounts it at the
// end. It skips the test where mounting is not permitted (CI runs as root).
// (shm's own tests keep a copy: they cannot import this package, which
// imports shm.)
func MountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	old := shm.Dir
	shm.Dir = dir
	t.Cleanup(func() { shm.Dir = old })
	return dir
}
