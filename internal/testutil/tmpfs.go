package testutil

import (
	"fmt"
	"testing"

	"github.com/fdp-engine/fdp/shm"
	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs of size bytes on a fresh directory, unmounted at
// the end of the test, and returns the directory. It skips the test where
// mounting is not permitted (CI runs as root). (shm's own tests keep a
// copy: they cannot import this package, which imports shm.)
func MountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs (needs root or CAP_SYS_ADMIN; CI runs as root): %v", size, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// UseShmDir makes dir the directory of the segments this process creates
// and opens (shm.Dir) until the end of the test.
func UseShmDir(t *testing.T, dir string) {
	old := shm.Dir
	shm.Dir = dir
	t.Cleanup(func() { shm.Dir = old })
}
