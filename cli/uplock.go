package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fdp-engine/fdp/shm"
	"golang.org/x/sys/unix"
)

// errInstanceSupervised: another `engine up` supervises the instance, or an
// engine of it runs outside any supervisor.
var errInstanceSupervised = errors.New("instance is already running")

// lockInstance makes this `engine up` the only supervisor of instance: it
// takes an exclusive flock on ".fdp.<instance>.up.lock" in the segment
// directory and refuses when an engine of the instance is live without it
// (a plain `engine run`). A second supervisor would otherwise restart-loop
// against the live engine and, on its own stop, remove the live instance's
// segments (found by an outside tester). release unlinks the lock file and
// drops the lock.
//
// Invariant: the lock is held on the file that the path names. A locker that
// opened the file before the holder unlinked it would lock an unlinked
// inode; it sees that the path names another inode (or none) and retries.
func lockInstance(instance string) (release func(), err error) {
	path := filepath.Join(shm.Dir, ".fdp."+instance+".up.lock")
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock instance %s: %w", instance, err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: another `engine up` supervises instance %q (%s)", errInstanceSupervised, instance, path)
			}
			return nil, fmt.Errorf("lock instance %s: %w", instance, err)
		}
		var held, named unix.Stat_t
		if unix.Fstat(fd, &held) != nil || unix.Stat(path, &named) != nil || held.Ino != named.Ino || held.Dev != named.Dev {
			unix.Close(fd) // the holder before us removed it: lock the file now there
			continue
		}
		release = func() {
			_ = os.Remove(path)
			unix.Close(fd)
		}
		if live, pid := liveEngine(instance); live {
			release()
			return nil, fmt.Errorf("%w: an engine of instance %q runs outside this supervisor (pid %d)", errInstanceSupervised, instance, pid)
		}
		return release, nil
	}
}

// liveEngine reports whether the instance's world segment is live or being
// initialised by a running process, and that process.
func liveEngine(instance string) (bool, uint32) {
	infos, err := shm.List()
	if err != nil {
		return false, 0
	}
	for _, in := range infos {
		if in.Instance == instance && in.Kind == shm.WorldKind && (in.State == shm.StateLive || in.State == shm.StateInitialising) {
			return true, in.PID
		}
	}
	return false, 0
}
