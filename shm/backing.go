package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Sparse segments: memory allocated range by range.
//
// A page of a tmpfs file that was never allocated is a hole. Reading it
// through a shared mapping allocates a page (it is not the zero page, unlike
// read(2)); writing it allocates one too, and when the file system is full
// the fault cannot be served and the process gets SIGBUS. So the writer of a
// sparse segment allocates a range with Back (fallocate(2): an error, never a
// signal) before it writes the range, and readers read only ranges the
// writer published as allocated (layout/backing.go's B1 and B2 for world
// segments).

// Sparse reports whether the segment was created sparse (CreateSparse on a
// file system with fallocate): Back and Unback act on it.
func (s *Segment) Sparse() bool { return s != nil && s.sparse }

// Back allocates the blocks of [off, off+n) of a sparse segment, so that
// writes into that range through the mapping cannot fault; allocated blocks
// keep their contents. A file system without room gives an error wrapping
// ErrNoSpace. On a segment that is not sparse it does nothing.
func (s *Segment) Back(off, n int) error {
	if !s.Sparse() || n <= 0 {
		return nil
	}
	if err := fallocate(int(s.f.Fd()), 0, int64(off), int64(n)); err != nil {
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			return noSpace(filepath.Dir(s.Path), n, err)
		}
		return fmt.Errorf("fdp/shm: allocate %d bytes at %d of %s: %w", n, off, s.Path, err)
	}
	return nil
}

// Unback gives the pages of [off, off+n) of a sparse segment back to the
// file system (a hole: it reads as zeros until allocated again). off and n
// must be multiples of the page size: a partial page would only be zeroed,
// and zeroing a page another range still uses would lose its data. On a
// segment that is not sparse it does nothing.
func (s *Segment) Unback(off, n int) error {
	if !s.Sparse() || n <= 0 {
		return nil
	}
	if ps := os.Getpagesize(); off%ps != 0 || n%ps != 0 {
		return fmt.Errorf("fdp/shm: unback [%d,+%d) of %s: not page-aligned", off, n, s.Path)
	}
	if err := fallocate(int(s.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n)); err != nil {
		return fmt.Errorf("fdp/shm: punch [%d,+%d) of %s: %w", off, n, s.Path, err)
	}
	return nil
}

// Free returns the bytes the segment's file system has free for this
// process (fstatfs: blocks available × block size).
func (s *Segment) Free() (int64, error) {
	if s == nil || s.f == nil {
		return 0, os.ErrClosed
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(s.f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("fstatfs %s: %w", s.Path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// NeedSpace returns an error wrapping ErrNoSpace, naming the segment's
// directory, when its file system has less than n bytes free for it, and
// nil otherwise (or when the free space cannot be read: Back then says).
// A writer checks with it before a Back that may not fit: a fallocate that
// fails half-way on tmpfs allocates and frees pages up to the full size.
func (s *Segment) NeedSpace(n int) error {
	free, err := s.Free()
	if err != nil || free >= int64(n) {
		return nil
	}
	return noSpace(filepath.Dir(s.Path), n, unix.ENOSPC)
}

// Allocated returns the bytes of the segment's file that hold memory (its
// allocated blocks, fstat's st_blocks): less than the file size for a sparse
// segment.
func (s *Segment) Allocated() (int64, error) {
	if s == nil || s.f == nil {
		return 0, os.ErrClosed
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("fstat %s: %w", s.Path, err)
	}
	return st.Blocks * 512, nil
}
