package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fdp-engine/fdp/shm"
	"golang.org/x/sys/unix"
)

// errInstanceLive: the instance is owned by a live process: an `engine up`
// supervising it, or an engine of it.
var errInstanceLive = errors.New("instance is already running")

// Owner roles written into the instance lock file.
const (
	ownerUp  = "up"  // an `engine up` supervisor
	ownerRun = "run" // an `engine run` started outside any supervisor
)

// lockPath is the instance lock file: ".fdp.<instance>.lock" in the segment
// directory (a dot file: shm.List and gc never see it).
func lockPath(instance string) string { return shm.LockPath(instance) }

// lockInstance makes this process the owner of instance before it creates
// or removes any of the instance's files: it takes an exclusive flock on the
// instance lock file, writes "<role> <pid>" into it and refuses when an
// engine of the instance is live without the lock. Both `engine up` (for its
// whole run, across engine restarts) and a stand-alone `engine run` hold it,
// so that an `up` next to a `run`, a `run` next to an `up` (even while its
// engine restarts) and two of either are refused with one line naming the
// owner and its pid. Without this, a second supervisor restart-looped
// against the live engine, its modules attached to the other engine and, on
// its stop, it removed the live instance's segments (found by an outside
// tester). release unlinks the lock file and drops the lock.
//
// Invariant: the lock is held on the file that the path names. A locker that
// opened the file before the holder unlinked it would lock an unlinked
// inode; it sees that the path names another inode (or none) and retries.
// The lock fd is close-on-exec: children (the supervised engine) never hold
// it, and it goes with its holder's death (SIGKILL included).
func lockInstance(instance, role string) (release func(), err error) {
	path := lockPath(instance)
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock instance %s: %w", instance, err)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			removed := !sameFile(fd, path)
			unix.Close(fd)
			if errors.Is(err, unix.EWOULDBLOCK) && removed {
				continue // gc held it to remove it (nobody owned it): open the file now there
			}
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, ownedError(instance, path)
			}
			return nil, fmt.Errorf("lock instance %s: %w", instance, err)
		}
		if !sameFile(fd, path) {
			unix.Close(fd) // the holder before us removed it: lock the file now there
			continue
		}
		var held unix.Stat_t
		_ = unix.Fstat(fd, &held)
		rec := []byte(role + " " + strconv.Itoa(os.Getpid()) + "\n")
		if unix.Ftruncate(fd, 0) != nil || writeAll(fd, rec) != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lock instance %s: cannot write %s", instance, path)
		}
		release = func() {
			// Unlink only while the path still names our (locked) file.
			var named unix.Stat_t
			if unix.Stat(path, &named) == nil && named.Ino == held.Ino && named.Dev == held.Dev {
				_ = os.Remove(path)
			}
			unix.Close(fd)
		}
		if live, pid := liveEngine(instance); live {
			release()
			return nil, fmt.Errorf("%w: an engine of instance %q is running (pid %d)", errInstanceLive, instance, pid)
		}
		return release, nil
	}
}

// sameFile reports whether path names the file open as fd.
func sameFile(fd int, path string) bool {
	var held, named unix.Stat_t
	return unix.Fstat(fd, &held) == nil && unix.Stat(path, &named) == nil && held.Ino == named.Ino && held.Dev == named.Dev
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, 0)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// ownedError is the one-line refusal for an instance whose lock is held: it
// names the owner's role and pid from the lock file (read again for a
// moment: the holder writes them right after taking the lock).
func ownedError(instance, path string) error {
	role, pid := readOwner(path)
	for deadline := time.Now().Add(200 * time.Millisecond); pid == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		role, pid = readOwner(path)
	}
	switch role {
	case ownerUp:
		return fmt.Errorf("%w: another `engine up` supervises instance %q (pid %d)", errInstanceLive, instance, pid)
	case ownerRun:
		return fmt.Errorf("%w: an `engine run` of instance %q is running (pid %d)", errInstanceLive, instance, pid)
	}
	return fmt.Errorf("%w: instance %q is owned by another process (%s is locked)", errInstanceLive, instance, path)
}

// readOwner reads "<role> <pid>" from the lock file (pid 0 if unreadable).
func readOwner(path string) (role string, pid int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return "", 0
	}
	pid, err = strconv.Atoi(f[1])
	if err != nil || pid <= 0 {
		return "", 0
	}
	return f[0], pid
}

// claimEngine is the ownership check of `engine run` before it creates or
// removes any file of instance. An engine started by the `engine up` that
// owns the instance (its parent holds the lock) runs under that lock; any
// other engine takes the lock itself for its lifetime (release), or is
// refused when the instance is owned or its engine is live.
func claimEngine(instance string) (release func(), err error) {
	role, pid := readOwner(lockPath(instance))
	if role == ownerUp && pid == os.Getppid() && lockHeld(lockPath(instance)) {
		return func() {}, nil
	}
	return lockInstance(instance, ownerRun)
}

// lockHeld reports whether a process holds the flock on path (never blocks).
func lockHeld(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return errors.Is(unix.Flock(fd, unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
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
