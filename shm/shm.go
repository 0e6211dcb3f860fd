// Package shm manages the lifecycle of FDP shared-memory segments: files in
// /dev/shm (or $FDP_SHM_DIR) created with mode 0600, O_EXCL and O_NOFOLLOW,
// mapped read-write by their writer and read-only (PROT_READ) by readers,
// listed, and removed when stale (their creator is dead).
package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/edsrzf/mmap-go"
	"github.com/fdp-engine/fdp/layout"
	"golang.org/x/sys/unix"
)

// Dir is the directory holding segments.
var Dir = defaultDir()

func defaultDir() string {
	if d := os.Getenv("FDP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

// Prefix starts every segment file name.
const Prefix = "fdp."

func validKind(k string) bool {
	if k == "" || len(k) > 32 {
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

// SegmentName returns "fdp.<instance>.<kind>".
func SegmentName(instance, kind string) string { return Prefix + instance + "." + kind }

// ParseName splits a segment name into instance and kind.
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

// Segment is a mapped segment.
type Segment struct {
	Name     string
	Path     string
	Data     []byte
	Writable bool
	m        mmap.MMap
	f        *os.File
	once     sync.Once
}

func checkName(name string) error {
	if _, _, ok := ParseName(name); !ok {
		return fmt.Errorf("fdp/shm: invalid segment name %q", name)
	}
	return nil
}

// Create creates a new segment of size bytes (zero-filled), mode 0600,
// refusing to follow symlinks or to reuse an existing file, and maps it
// read-write.
func Create(name string, size int) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if size < layout.HeaderSize {
		return nil, fmt.Errorf("fdp/shm: segment %s: size %d below %d", name, size, layout.HeaderSize)
	}
	path := filepath.Join(Dir, name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("fdp/shm: create %s: %w", path, os.ErrExist)
		}
		return nil, fmt.Errorf("fdp/shm: create %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	fail := func(err error) (*Segment, error) {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("fdp/shm: create %s: %w", path, err)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return fail(err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail(err)
	}
	m, err := mmap.Map(f, mmap.RDWR, 0)
	if err != nil {
		return fail(err)
	}
	return &Segment{Name: name, Path: path, Data: m, Writable: true, m: m, f: f}, nil
}

// Open maps an existing segment: read-only (PROT_READ, writes fault) or
// read-write. The file must be a regular file owned by us with no group or
// other permissions.
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

// OpenPath maps an arbitrary file read-only (for inspecting copies of
// segments, e.g. those of a crashed engine). It must be a regular file.
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
	fd, err := unix.Open(path, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fdp/shm: open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("fdp/shm: stat %s: %w", path, err)
	}
	refuse := func(why string) (*Segment, error) {
		f.Close()
		return nil, fmt.Errorf("fdp/shm: refusing segment %s: %s", path, why)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return refuse("not a regular file")
	}
	if checkOwner {
		if st.Uid != uint32(os.Geteuid()) {
			return refuse(fmt.Sprintf("owned by uid %d, not %d", st.Uid, os.Geteuid()))
		}
		if st.Mode&0o077 != 0 {
			return refuse(fmt.Sprintf("mode %#o allows group or other access", st.Mode&0o777))
		}
	}
	if st.Size < layout.HeaderSize {
		return refuse(fmt.Sprintf("size %d below the %d-byte header", st.Size, layout.HeaderSize))
	}
	prot := mmap.RDONLY
	if writable {
		prot = mmap.RDWR
	}
	m, err := mmap.Map(f, prot, 0)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fdp/shm: map %s: %w", path, err)
	}
	return &Segment{Path: path, Data: m, Writable: writable, m: m, f: f}, nil
}

// Close unmaps the segment and closes its file. It is idempotent.
func (s *Segment) Close() error {
	var err error
	s.once.Do(func() {
		if s.m != nil {
			err = s.m.Unmap()
		}
		if s.f != nil {
			if e := s.f.Close(); err == nil {
				err = e
			}
		}
		s.Data = nil
	})
	return err
}

// Unlink removes the segment's file (mappings stay valid until closed).
func (s *Segment) Unlink() error { return unlinkPath(s.Path) }

// Unlink removes the named segment.
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
