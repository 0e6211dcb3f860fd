// Package shm manages the lifecycle of FDP shared-memory segments: files in
// /dev/shm (or $FDP_SHM_DIR) created with mode 0600, O_EXCL and O_NOFOLLOW,
// mapped read-write by their writer and read-only (PROT_READ) by readers,
// listed, and removed when stale (their creator is dead).
//
// Creator lock: Create takes an exclusive flock(2) on the segment file before
// the file becomes visible under its name (where the kernel supports
// O_TMPFILE; otherwise immediately after the O_EXCL create) and holds it until
// the segment is closed or the creator dies. List probes that lock without
// blocking, so a segment whose creator is still initialising it is never
// mistaken for a corrupt one, whatever pid namespace the creator lives in.
package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/edsrzf/mmap-go"
	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"
)

// Dir is the directory holding segments: $FDP_SHM_DIR if set, else /dev/shm.
var Dir = defaultDir()

func defaultDir() string {
	if d := os.Getenv("FDP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

// Prefix starts every segment file name.
const Prefix = "fdp."

// maxKindLen bounds the kind part of a segment name.
const maxKindLen = 64

func validKind(k string) bool {
	if k == "" || len(k) > maxKindLen || k[0] == '.' || k[len(k)-1] == '.' || strings.Contains(k, "..") {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// SegmentName returns "fdp.<instance>.<kind>", e.g. "fdp.demo.world" or
// "fdp.demo.mod.3". The result is validated by Create/Open, not here.
func SegmentName(instance, kind string) string { return Prefix + instance + "." + kind }

// ParseName splits a segment name "fdp.<instance>.<kind>" into instance and
// kind. ok is false unless instance satisfies layout.ValidInstanceName and
// kind is 1..64 bytes of [A-Za-z0-9_-.] without empty dot-separated parts.
func ParseName(name string) (instance, kind string, ok bool) {
	rest, found := strings.CutPrefix(name, Prefix)
	if !found {
		return "", "", false
	}
	instance, kind, found = strings.Cut(rest, ".")
	if !found || !layout.ValidInstanceName(instance) || !validKind(kind) {
		return "", "", false
	}
	return instance, kind, true
}

// Segment is a mapped segment. Data is the whole mapping; it must not be used
// after Close.
type Segment struct {
	Name     string
	Path     string
	Data     []byte
	Writable bool
	m        mmap.MMap
	f        *os.File
	sparse   bool // created by CreateSparse on a file system with fallocate
	once     sync.Once
	closeErr error
}

func checkName(name string) error {
	if _, _, ok := ParseName(name); !ok {
		return fmt.Errorf("fdp/shm: invalid segment name %q (want fdp.<instance>.<kind>)", name)
	}
	return nil
}

// useTmpfile selects the O_TMPFILE+linkat creation path (tests turn it off
// to exercise the fallback).
var useTmpfile = true

// ErrNoSpace is wrapped by Create when the directory cannot hold the whole
// segment (ENOSPC or EDQUOT while allocating it).
var ErrNoSpace = errors.New("not enough space for the segment")

// Create creates a new segment of size bytes (zero-filled by the kernel),
// mode 0600 regardless of umask, refusing to follow symlinks or to reuse an
// existing name (the error then wraps os.ErrExist), and maps it read-write
// (MAP_SHARED). Every byte is allocated at creation (fallocate(2), or zeros
// written where the file system has no fallocate), so that no later access
// through the mapping can fault with SIGBUS because the file system is full;
// a directory without the room gives an error wrapping ErrNoSpace that names
// the directory, the bytes needed and the bytes free. On any failure nothing
// is left behind under name (nor any temporary file). The returned segment
// holds the creator lock until Close.
func Create(name string, size int) (*Segment, error) { return create(name, size, size) }

// CreateSparse is Create for a segment of which only [0, backed) is allocated
// at creation: the rest of the file is a hole, allocated range by range with
// Back before it is written and given back with Unback (see Back for the
// rule that keeps this free of SIGBUS). On a file system without
// fallocate(2) every byte is allocated, as Create does, and Back and Unback
// do nothing.
func CreateSparse(name string, size, backed int) (*Segment, error) {
	return create(name, size, min(max(backed, layout.HeaderSize), size))
}

func create(name string, size, backed int) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if size < layout.HeaderSize {
		return nil, fmt.Errorf("fdp/shm: create %s: size %d below the %d-byte header", name, size, layout.HeaderSize)
	}
	path := filepath.Join(Dir, name)
	if useTmpfile {
		s, err := createTmpfile(path, size, backed)
		if !errors.Is(err, errNoTmpfile) {
			if s != nil {
				s.Name = name
			}
			return s, err
		}
	}
	s, err := createExcl(path, size, backed)
	if s != nil {
		s.Name = name
	}
	return s, err
}

var errNoTmpfile = errors.New("O_TMPFILE unsupported")

func createErr(path string, err error) error {
	if errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("fdp/shm: create %s: %w", path, os.ErrExist)
	}
	return fmt.Errorf("fdp/shm: create %s: %w", path, err)
}

// createTmpfile builds the segment as an anonymous file in Dir (mode, lock,
// size and mapping all set up while nobody can see it) and then links it to
// path; linkat never replaces nor follows an existing name, so it has the
// O_EXCL|O_NOFOLLOW semantics. It returns errNoTmpfile when the file system
// or kernel cannot do this.
func createTmpfile(path string, size, backed int) (*Segment, error) {
	fd, err := unix.Open(filepath.Dir(path), unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			return nil, errNoTmpfile
		}
		return nil, createErr(path, err)
	}
	s, err := setup(fd, path, size, backed)
	if err != nil {
		return nil, createErr(path, err)
	}
	// Linking through /proc/self/fd needs no capability (AT_EMPTY_PATH would
	// need CAP_DAC_READ_SEARCH).
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	if err != nil {
		_ = s.Close()
		if errors.Is(err, unix.ENOENT) && procMissing() {
			return nil, errNoTmpfile
		}
		return nil, createErr(path, err)
	}
	return s, nil
}

func procMissing() bool {
	_, err := os.Stat("/proc/self/fd")
	return err != nil
}

// createExcl is the fallback: O_CREAT|O_EXCL|O_NOFOLLOW, then lock, size and
// map; the file is unlinked again on any failure. Between the create and the
// flock a concurrent List may briefly see an empty unlocked file.
func createExcl(path string, size, backed int) (*Segment, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, createErr(path, err)
	}
	s, err := setup(fd, path, size, backed)
	if err != nil {
		_ = unix.Unlink(path)
		return nil, createErr(path, err)
	}
	return s, nil
}

// setup takes ownership of fd: fchmod 0600 (the umask may have narrowed the
// open mode), creator lock, size and allocation of [0, backed), map
// read-write. On error fd is closed.
func setup(fd int, path string, size, backed int) (*Segment, error) {
	f := os.NewFile(uintptr(fd), path)
	fail := func(what string, err error) (*Segment, error) {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return fail("fchmod", err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail("flock", err)
	}
	sparse, err := allocate(fd, int64(size), int64(backed))
	if err != nil {
		_ = f.Close()
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			return nil, noSpace(filepath.Dir(path), backed, err)
		}
		return nil, fmt.Errorf("allocate %d bytes: %w", backed, err)
	}
	m, err := mmap.Map(f, mmap.RDWR, 0)
	if err != nil {
		return fail("mmap", err)
	}
	return &Segment{Path: path, Data: m, Writable: true, m: m, f: f, sparse: sparse}, nil
}

// allocate sizes the new, empty file fd to size bytes with the blocks of
// [0, backed) allocated: ftruncate, then fallocate(2) of the prefix (mode 0
// changes no size inside the file). It reports whether the rest stays
// sparse: on a file system without fallocate every byte is allocated by
// writing zeros (what posix_fallocate does there), and the segment is not
// sparse.
func allocate(fd int, size, backed int64) (sparse bool, err error) {
	if err := unix.Ftruncate(fd, size); err != nil {
		return false, err
	}
	err = fallocate(fd, 0, 0, backed)
	if err == nil || !(errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS)) {
		return backed < size, err
	}
	return false, writeZeros(fd, size)
}

// fallocate is fallocate(2), retried on EINTR.
func fallocate(fd int, mode uint32, off, n int64) error {
	err := unix.Fallocate(fd, mode, off, n)
	for errors.Is(err, unix.EINTR) {
		err = unix.Fallocate(fd, mode, off, n)
	}
	return err
}

// writeZeros writes zeros over [0, size) of fd, which allocates every block
// of a sparse file.
func writeZeros(fd int, size int64) error {
	zeros := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		n := min(int64(len(zeros)), size-off)
		w, err := unix.Pwrite(fd, zeros[:n], off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if w == 0 {
			return unix.ENOSPC
		}
		off += int64(w)
	}
	return nil
}

// noSpace is the error of a segment that dir cannot hold: one line naming
// the directory, the bytes needed and the bytes free.
func noSpace(dir string, size int, err error) error {
	free := "unknown"
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		free = fmt.Sprintf("%d", uint64(st.Bavail)*uint64(st.Bsize))
	}
	return fmt.Errorf("%w in %s: need %d bytes (%.1f MiB), %s bytes free (set FDP_SHM_DIR or make room): %w",
		ErrNoSpace, dir, size, float64(size)/(1<<20), free, err)
}

// Open maps an existing segment of Dir: read-only (PROT_READ: a write faults
// with SIGSEGV) or read-write. It refuses symlinks, non-regular files, files
// not owned by the effective uid, files with any group/other permission bit,
// and files smaller than layout.HeaderSize. Contents are not validated: use
// the layout decoders.
func Open(name string, writable bool) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	s, err := open(filepath.Join(Dir, name), writable, true)
	if err != nil {
		return nil, err
	}
	s.Name = name
	return s, nil
}

// OpenPath maps an arbitrary file read-only (for `engine dump FILE` on copies
// of segments). It must be a regular file (not a symlink) of at least
// layout.HeaderSize bytes; owner and permission bits are not checked.
func OpenPath(path string) (*Segment, error) {
	s, err := open(path, false, false)
	if err != nil {
		return nil, err
	}
	s.Name = filepath.Base(path)
	return s, nil
}

func open(path string, writable, checkOwner bool) (*Segment, error) {
	flags := unix.O_RDONLY
	if writable {
		flags = unix.O_RDWR
	}
	// O_NONBLOCK: a FIFO planted under a segment name must not block us; it
	// has no effect on regular files.
	fd, err := unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("fdp/shm: refusing segment %s: it is a symlink: %w", path, err)
		}
		return nil, fmt.Errorf("fdp/shm: open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("fdp/shm: stat %s: %w", path, err)
	}
	refuse := func(why string) (*Segment, error) {
		_ = f.Close()
		return nil, fmt.Errorf("fdp/shm: refusing segment %s: %s", path, why)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return refuse(fmt.Sprintf("not a regular file (mode %#o)", st.Mode))
	}
	if checkOwner {
		if st.Uid != uint32(os.Geteuid()) {
			return refuse(fmt.Sprintf("owned by uid %d, not by us (euid %d)", st.Uid, os.Geteuid()))
		}
		if st.Mode&0o077 != 0 {
			return refuse(fmt.Sprintf("mode %#o allows group or other access", st.Mode&0o777))
		}
	}
	if st.Size < layout.HeaderSize {
		return refuse(fmt.Sprintf("size %d below the %d-byte header", st.Size, layout.HeaderSize))
	}
	if int64(int(st.Size)) != st.Size {
		return refuse(fmt.Sprintf("size %d too large to map", st.Size))
	}
	prot := mmap.RDONLY
	if writable {
		prot = mmap.RDWR
	}
	m, err := mmap.Map(f, prot, 0)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("fdp/shm: map %s: %w", path, err)
	}
	return &Segment{Path: path, Data: m, Writable: writable, m: m, f: f}, nil
}

// Close unmaps the segment and closes its file (releasing the creator lock).
// It is idempotent and returns the first call's error every time.
func (s *Segment) Close() error {
	s.once.Do(func() {
		if s.m != nil {
			s.closeErr = s.m.Unmap()
		}
		if s.f != nil {
			if e := s.f.Close(); s.closeErr == nil {
				s.closeErr = e
			}
		}
		s.Data, s.m = nil, nil
	})
	return s.closeErr
}

// Offset returns addr's offset in the mapping (a fault address made a
// segment offset); ok is false when addr is outside it. Same invariants as
// Contains: only the mapping's address is inspected.
func (s *Segment) Offset(addr uintptr) (off int, ok bool) {
	if !s.Contains(addr) {
		return 0, false
	}
	return int(addr - uintptr(unsafe.Pointer(unsafe.SliceData(s.Data)))), true
}

// Contains reports whether addr lies inside the segment's mapping (e.g. the
// address of a memory fault). A nil or closed segment contains nothing.
//
// Invariants: only the mapping's address is inspected; nothing is
// dereferenced.
func (s *Segment) Contains(addr uintptr) bool {
	if s == nil || len(s.Data) == 0 {
		return false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(s.Data)))
	return addr >= base && addr-base < uintptr(len(s.Data))
}

// FileSize returns the current size of the segment's file (fstat on its
// descriptor): less than len(Data) once the file was truncated under the
// mapping, whose pages beyond the new end then fault.
func (s *Segment) FileSize() (int64, error) {
	if s == nil || s.f == nil {
		return 0, os.ErrClosed
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(s.f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("fstat %s: %w", s.Path, err)
	}
	return st.Size, nil
}

// Current reports whether the segment's path still names the file it maps:
// false once the file was unlinked or replaced (e.g. a restarted engine
// created the segment anew), or after Close.
func (s *Segment) Current() bool {
	if s.f == nil || s.Data == nil {
		return false
	}
	mapped, err := s.f.Stat()
	if err != nil {
		return false
	}
	named, err := os.Lstat(s.Path)
	return err == nil && os.SameFile(mapped, named)
}

// Unlink removes the segment's file if its path still names the file this
// segment maps: a file that another process created under the same name
// since (ours was removed, e.g. by gc after we were taken for dead) is not
// ours to remove and is left alone. Existing mappings stay valid until they
// are closed. A missing file is not an error; after Close nothing is
// removed (the mapped file can no longer be told apart).
func (s *Segment) Unlink() error {
	if s.f == nil {
		return unlinkPath(s.Path) // a segment not opened by this package
	}
	var held, named unix.Stat_t
	if s.Data == nil || unix.Fstat(int(s.f.Fd()), &held) != nil || unix.Lstat(s.Path, &named) != nil {
		return nil
	}
	if held.Ino != named.Ino || held.Dev != named.Dev {
		return nil
	}
	return unlinkPath(s.Path)
}

// Unlink removes the named segment of Dir. A missing file is not an error.
func Unlink(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return unlinkPath(filepath.Join(Dir, name))
}

func unlinkPath(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("fdp/shm: unlink: %w", err)
	}
	return nil
}

// CheckDir reports a segment directory (Dir) that is missing or not a
// directory, in one line naming it and where it came from, so that a
// command says that first rather than what failed because of it.
func CheckDir() error {
	from := "the default"
	if v := os.Getenv("FDP_SHM_DIR"); v != "" && v == Dir {
		from = "$FDP_SHM_DIR"
	}
	st, err := os.Stat(Dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("fdp/shm: the segment directory %s (%s) does not exist: create it or point FDP_SHM_DIR at one", Dir, from)
	case err != nil:
		return fmt.Errorf("fdp/shm: the segment directory %s (%s): %w", Dir, from, err)
	case !st.IsDir():
		return fmt.Errorf("fdp/shm: the segment directory %s (%s) is not a directory", Dir, from)
	}
	return nil
}
