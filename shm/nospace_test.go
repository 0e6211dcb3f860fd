package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// mountSmallTmpfs mounts a tmpfs of size bytes on a fresh directory, makes
// it Dir for the test and unmounts it at the end. It skips the test where
// mounting is not permitted (CI runs as root).
func mountSmallTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	old := Dir
	Dir = dir
	t.Cleanup(func() { Dir = old })
	return dir
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestCreateNoSpace: a segment larger than the free space of its directory
// is refused at creation with one line naming the directory, the bytes
// needed and the bytes free, and leaves no file (neither under its name nor
// a temporary one), on both creation paths.
func TestCreateNoSpace(t *testing.T) {
	for _, tmp := range []bool{true, false} {
		t.Run(fmt.Sprintf("tmpfile=%v", tmp), func(t *testing.T) {
			old := useTmpfile
			useTmpfile = tmp
			t.Cleanup(func() { useTmpfile = old })
			dir := mountSmallTmpfs(t, 4<<20)
			name := SegmentName(uniqueInstance(), "world")
			const size = 8 << 20
			s, err := Create(name, size)
			require.Nil(t, s)
			require.ErrorIs(t, err, ErrNoSpace)
			require.ErrorIs(t, err, unix.ENOSPC)
			msg := err.Error()
			require.NotContains(t, msg, "\n")
			require.Contains(t, msg, dir)
			require.Contains(t, msg, fmt.Sprintf("need %d bytes", size))
			require.Contains(t, msg, "bytes free")
			require.Empty(t, dirEntries(t, dir), "nothing left behind")

			// What fits is still created, every block allocated.
			s, err = Create(name, 1<<20)
			require.NoError(t, err)
			defer s.Close()
			var st unix.Stat_t
			require.NoError(t, unix.Stat(filepath.Join(dir, name), &st))
			require.GreaterOrEqual(t, st.Blocks*512, int64(1<<20), "allocated, not sparse")
		})
	}
}

// TestCreatedSegmentWritableWhenFull: a segment created before its file
// system filled up is written in full through its mapping without a fault
// (a sparse one would SIGBUS on the first page that needs a new block).
func TestCreatedSegmentWritableWhenFull(t *testing.T) {
	dir := mountSmallTmpfs(t, 6<<20)
	s, err := Create(SegmentName(uniqueInstance(), "events"), 2<<20)
	require.NoError(t, err)
	defer s.Close()
	// Fill the rest of the file system.
	f, err := os.Create(filepath.Join(dir, "filler"))
	require.NoError(t, err)
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			require.True(t, errors.Is(err, unix.ENOSPC), "filling: %v", err)
			break
		}
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("writing the segment faulted on a full file system: %v", r)
			}
		}()
		for i := range s.Data {
			s.Data[i] = byte(i)
		}
	}()
	require.Equal(t, byte(7), s.Data[7])
}

// TestAllocateFallbackWritesZeros: where fallocate is not supported the
// file is sized and zero-filled (every block allocated).
func TestAllocateFallbackWritesZeros(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "f"))
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, unix.Ftruncate(int(f.Fd()), 3<<20+5))
	require.NoError(t, writeZeros(int(f.Fd()), 3<<20+5))
	st, err := f.Stat()
	require.NoError(t, err)
	require.Equal(t, int64(3<<20+5), st.Size())
	b, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("\x00", 16), string(b[len(b)-16:]))
}
