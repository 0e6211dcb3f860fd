package shm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestReopenAndMapFD: a read-only reopen of a segment can be mapped only
// read-only and not truncated; a read-write one maps writable and shares
// the bytes; neither carries the creator lock.
func TestReopenAndMapFD(t *testing.T) {
	name := SegmentName(fmt.Sprintf("fd%d%x", os.Getpid(), rand.Uint32()), "world")
	s, err := Create(name, 8192)
	require.NoError(t, err)
	t.Cleanup(func() { s.Unlink(); s.Close() })
	s.Data[5000] = 7

	ro, err := s.Reopen(false)
	require.NoError(t, err)
	_, err = unix.Mmap(int(ro.Fd()), 0, 8192, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	require.ErrorIs(t, err, unix.EACCES)
	require.ErrorIs(t, unix.Ftruncate(int(ro.Fd()), 4096), unix.EINVAL)
	require.Error(t, unix.Flock(int(ro.Fd()), unix.LOCK_EX|unix.LOCK_NB), "the creator lock stays with the creator")
	_, err = MapFD(ro, name, true)
	require.Error(t, err, "a read-only descriptor cannot be mapped read-write")
	ro, err = s.Reopen(false)
	require.NoError(t, err)
	m, err := MapFD(ro, name, false)
	require.NoError(t, err)
	require.Equal(t, byte(7), m.Data[5000])
	require.NoError(t, m.Close())

	rw, err := s.Reopen(true)
	require.NoError(t, err)
	w, err := MapFD(rw, name, true)
	require.NoError(t, err)
	w.Data[6000] = 9
	require.Equal(t, byte(9), s.Data[6000], "one file")
	require.NoError(t, w.Close())

	s.Close()
	_, err = s.Reopen(false)
	require.Error(t, err, "closed")
}
