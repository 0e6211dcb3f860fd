package module

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// dirWatch waits for changes in the segment directory while a module waits
// for its engine: the engine's start-up creates (links) the world, leases
// and events segments and the control socket there, and inotify reports
// each at once. Only names appearing and disappearing count: the module's
// own attempts open and close segment files (IN_CLOSE_WRITE would wake it
// with its own events, a busy loop). Not every step of the start-up is a directory change (a
// segment becomes ready, the socket starts listening), so every wait is
// also bounded by a short poll interval that doubles from pollMin to
// pollMax and starts over after each change. Without inotify it only
// polls.
type dirWatch struct {
	fd   int // inotify instance, -1 without
	poll time.Duration
	buf  []byte
}

const (
	pollMin = time.Millisecond
	pollMax = 4 * time.Millisecond
)

func newDirWatch(dir string) *dirWatch {
	w := &dirWatch{fd: -1, poll: pollMin}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return w
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_MOVED_FROM); err != nil {
		unix.Close(fd)
		return w
	}
	w.fd, w.buf = fd, make([]byte, 4096)
	return w
}

// wait returns after a change in the directory, the poll interval, or
// limit (whichever comes first), or with ctx's error.
func (w *dirWatch) wait(ctx context.Context, limit time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := min(w.poll, max(limit, 0))
	w.poll = min(w.poll*2, pollMax)
	if w.fd < 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	// ctx is checked between waits of at most pollMax.
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int((d+time.Millisecond-1)/time.Millisecond))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return nil // treated as a poll timeout
	}
	if n > 0 {
		for {
			if k, err := unix.Read(w.fd, w.buf); k <= 0 || err != nil {
				break
			}
		}
		w.poll = pollMin
	}
	return ctx.Err()
}

func (w *dirWatch) close() {
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}
