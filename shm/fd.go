package shm

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/edsrzf/mmap-go"
	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"
)

// Descriptors: the engine hands a module its segments as file descriptors
// (SCM_RIGHTS over the control socket) instead of names. The world and the
// event log are reopened read-only (Reopen), so that a module can map them
// only PROT_READ (mmap PROT_WRITE with MAP_SHARED fails with EACCES) and
// cannot ftruncate them (EINVAL); its own module segment read-write. The
// module maps what it received with MapFD and never opens a segment by path.
// This file contains no unsafe code: the mapping goes through mmap-go.

// Reopen opens the segment's file again, read-only or read-write, as a new
// open file description (through /proc/self/fd, so no path lookup can name
// another file). The result carries neither the creator lock (held on the
// creator's own description, so a module holding it cannot make a dead
// engine's segment look alive) nor more access than asked for. The caller
// owns the file.
func (s *Segment) Reopen(writable bool) (*os.File, error) {
	if s.f == nil {
		return nil, fmt.Errorf("reopen %s: segment is closed", s.Name)
	}
	flags := unix.O_RDONLY
	if writable {
		flags = unix.O_RDWR
	}
	p := "/proc/self/fd/" + strconv.Itoa(int(s.f.Fd()))
	fd, err := unix.Open(p, flags|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		// No /proc: open the path, and accept it only if it is still the
		// file mapped (same device and inode).
		fd, err = unix.Open(s.Path, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err == nil && !sameFile(int(s.f.Fd()), fd) {
			_ = unix.Close(fd)
			return nil, fmt.Errorf("reopen %s: the path names another file now", s.Name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reopen %s: %w", s.Name, err)
	}
	return os.NewFile(uintptr(fd), s.Path), nil
}

// sameFile reports whether two descriptors refer to the same file.
func sameFile(a, b int) bool {
	var sa, sb unix.Stat_t
	return unix.Fstat(a, &sa) == nil && unix.Fstat(b, &sb) == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// MapFD maps the segment file f (received from the engine) read-only
// (PROT_READ) or read-write, and takes ownership of f (Close closes it; so
// does a failure). name is for messages and display only. It refuses a file
// that is not a regular file or is smaller than the common header, and a
// read-write mapping of a descriptor not open for writing. Contents are not
// validated: use the layout decoders.
func MapFD(f *os.File, name string, writable bool) (*Segment, error) {
	fail := func(err error) (*Segment, error) {
		_ = f.Close()
		return nil, fmt.Errorf("map %s from its descriptor: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fail(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fail(fmt.Errorf("not a regular file (mode %#o)", st.Mode))
	}
	if st.Size < layout.HeaderSize || int64(int(st.Size)) != st.Size {
		return fail(fmt.Errorf("size %d not mappable (header is %d bytes)", st.Size, layout.HeaderSize))
	}
	prot := mmap.RDONLY
	if writable {
		prot = mmap.RDWR
	}
	m, err := mmap.Map(f, prot, 0)
	if err != nil {
		return fail(err)
	}
	return &Segment{Name: name, Path: f.Name(), Data: m, Writable: writable, m: m, f: f}, nil
}
