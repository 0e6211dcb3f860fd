package module

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// dirWatch waits for changes in the segment directory while a module waits
// for its engine: the engine's start-up renames its control socket into
// place there (after creating its segments), and inotify reports it at
// once. Only names appearing and disappearing count (IN_CLOSE_WRITE would
// wake the module with the engine's own writes). A dead engine's socket
// stays until the next engine replaces it, and the listener may start
// after the name appears, so every wait is also bounded by a short poll
// interval that doubles from pollMin to pollMax and starts over after each
// change. Without inotify it only polls.
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
