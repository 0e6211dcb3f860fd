package shm

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// testStart is taken as early as possible; the process started shortly before.
var testStart = time.Now()

// Child roles (re-exec of the test binary, selected by FDP_TEST_CHILD):
//
//	rofault  map FDP_CHILD_SEG read-only, print "mapped", write to it
//	creator  Create FDP_CHILD_SEG, initialise it as FDP_CHILD_MODE says
//	         (ready | notready | blank | closed), print "ok", block on stdin
//	engine   as creator (ready), and listen on the unix socket
//	         FDP_CHILD_SOCK (not unlinked when the process dies)
func TestMain(m *testing.M) {
	switch os.Getenv("FDP_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "rofault":
		childROFault()
	case "creator":
		childCreator()
	case "engine":
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: os.Getenv("FDP_CHILD_SOCK"), Net: "unix"})
		if err != nil {
			childFail(err)
		}
		ln.SetUnlinkOnClose(false)
		childCreator()
	default:
		fmt.Fprintln(os.Stderr, "unknown child role")
		os.Exit(3)
	}
}

func childFail(err error) {
	fmt.Fprintln(os.Stderr, "child:", err)
	os.Exit(4)
}

func childROFault() {
	s, err := Open(os.Getenv("FDP_CHILD_SEG"), false)
	if err != nil {
		childFail(err)
	}
	fmt.Println("mapped")
	s.Data[layout.HeaderSize-1] = 0xAA // must fault: PROT_READ mapping
	fmt.Println("wrote")
	os.Exit(0)
}

func childCreator() {
	name := os.Getenv("FDP_CHILD_SEG")
	inst, _, _ := ParseName(name)
	s, err := Create(name, 2*layout.HeaderSize)
	if err != nil {
		childFail(err)
	}
	mode := os.Getenv("FDP_CHILD_MODE")
	if mode != "blank" {
		h := &layout.Header{Kind: layout.KindLeases, TotalSize: uint64(len(s.Data)), Instance: inst,
			CreatorPID: uint32(os.Getpid()), CreatorTime: SelfStartTime(), CreatedNano: time.Now().UnixNano()}
		if err := layout.EncodeHeader(s.Data, h); err != nil {
			childFail(err)
		}
		if mode != "notready" {
			layout.MarkReady(s.Data)
		}
	}
	if mode == "closed" {
		if err := s.Close(); err != nil {
			childFail(err)
		}
	}
	fmt.Println("ok")
	_, _ = io.Copy(io.Discard, os.Stdin) // block until killed
	os.Exit(0)
}

// child starts the test binary in a child role with extra environment.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr syncBuffer
	pid    int
}

// syncBuffer collects a child's stderr; exec copies into it from its own
// goroutine while the test may read it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startChild(t *testing.T, role string, env ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), append([]string{"FDP_TEST_CHILD=" + role, "FDP_SHM_DIR=" + Dir}, env...)...)
	c.cmd.Stderr = &c.stderr
	var err error
	c.stdin, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	out, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	c.out = bufio.NewReader(out)
	require.NoError(t, c.cmd.Start())
	c.pid = c.cmd.Process.Pid
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	})
	return c
}

// line reads the child's next stdout line (blocking until it prints or dies).
func (c *child) line(t *testing.T) string {
	t.Helper()
	l, err := c.out.ReadString('\n')
	require.NoError(t, err, "child stderr: %s", c.stderr.String())
	return strings.TrimSpace(l)
}

// kill SIGKILLs the child and reaps it.
func (c *child) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, syscall.Kill(c.pid, syscall.SIGKILL))
	_ = c.cmd.Wait()
}

func startCreator(t *testing.T, name, mode string) *child {
	t.Helper()
	c := startChild(t, "creator", "FDP_CHILD_SEG="+name, "FDP_CHILD_MODE="+mode)
	require.Equal(t, "ok", c.line(t), "child stderr: %s", c.stderr.String())
	return c
}

func useTempDir(t *testing.T) string {
	t.Helper()
	old := Dir
	Dir = t.TempDir()
	t.Cleanup(func() { Dir = old })
	return Dir
}

// bothPaths runs f with the O_TMPFILE creation path and with the fallback.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	for _, tmp := range []bool{true, false} {
		t.Run(fmt.Sprintf("tmpfile=%v", tmp), func(t *testing.T) {
			old := useTmpfile
			useTmpfile = tmp
			t.Cleanup(func() { useTmpfile = old })
			useTempDir(t)
			f(t)
		})
	}
}

func uniqueInstance() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("t%d%x", os.Getpid(), b)
}

func writeReadyHeader(t *testing.T, s *Segment, inst string, pid uint32, start uint64) {
	t.Helper()
	require.NoError(t, layout.EncodeHeader(s.Data, &layout.Header{Kind: layout.KindWorld, TotalSize: uint64(len(s.Data)),
		Instance: inst, CreatorPID: pid, CreatorTime: start}))
	layout.MarkReady(s.Data)
}

func states(t *testing.T) map[string]Info {
	t.Helper()
	infos, err := List()
	require.NoError(t, err)
	m := map[string]Info{}
	for _, in := range infos {
		m[in.Name] = in
	}
	return m
}

func TestNames(t *testing.T) {
	require.Equal(t, "fdp.demo.world", SegmentName("demo", "world"))
	for _, tc := range []struct {
		name, inst, kind string
		ok               bool
	}{
		{"fdp.demo.world", "demo", "world", true},
		{"fdp.demo.mod.3", "demo", "mod.3", true},
		{"fdp.a-b_c.leases", "a-b_c", "leases", true},
		{"fdp.demo", "", "", false},
		{"fdp.demo.", "", "", false},
		{"fdp..world", "", "", false},
		{"xdp.demo.world", "", "", false},
		{"fdp.demo.mod..3", "", "", false},
		{"fdp.demo.mod.", "", "", false},
		{"fdp.demo.a/b", "", "", false},
		{"fdp.de mo.world", "", "", false},
		{"fdp." + strings.Repeat("x", 32) + ".world", "", "", false},
		{"fdp.demo." + strings.Repeat("k", 65), "", "", false},
	} {
		inst, kind, ok := ParseName(tc.name)
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.inst, inst, tc.name)
		require.Equal(t, tc.kind, kind, tc.name)
	}
	useTempDir(t)
	for _, bad := range []string{"bad/name", "fdp.x", "../fdp.x.y", "fdp.x.../y"} {
		_, err := Create(bad, layout.HeaderSize)
		require.ErrorContains(t, err, "invalid segment name", bad)
		_, err = Open(bad, false)
		require.ErrorContains(t, err, "invalid segment name", bad)
		require.ErrorContains(t, Unlink(bad), "invalid segment name", bad)
	}
}

func TestCreateOpenRoundTrip(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		s, err := Create("fdp.t.x", 3*layout.HeaderSize)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		require.Equal(t, "fdp.t.x", s.Name)
		require.Equal(t, filepath.Join(Dir, "fdp.t.x"), s.Path)
		require.True(t, s.Writable)
		require.Len(t, s.Data, 3*layout.HeaderSize)
		require.Equal(t, make([]byte, 3*layout.HeaderSize), s.Data, "zero-filled")

		st, err := os.Stat(s.Path)
		require.NoError(t, err)
		require.Equal(t, int64(3*layout.HeaderSize), st.Size())
		require.Equal(t, os.FileMode(0o600), st.Mode())

		s.Data[100] = 7
		r, err := Open("fdp.t.x", false)
		require.NoError(t, err)
		require.False(t, r.Writable)
		require.Equal(t, byte(7), r.Data[100])
		w, err := Open("fdp.t.x", true)
		require.NoError(t, err)
		w.Data[2*layout.HeaderSize] = 9
		require.Equal(t, byte(9), s.Data[2*layout.HeaderSize], "shared mapping")
		require.Equal(t, byte(9), r.Data[2*layout.HeaderSize])
		require.NoError(t, w.Close())

		require.NoError(t, r.Close())
		require.NoError(t, r.Close(), "Close is idempotent")
		require.Nil(t, r.Data)

		// Unlink keeps the creator's mapping usable; the name is gone.
		require.True(t, s.Current())
		require.NoError(t, s.Unlink())
		require.False(t, s.Current(), "unlinked")
		s.Data[5] = 1
		_, err = Open("fdp.t.x", false)
		require.ErrorIs(t, err, os.ErrNotExist)
		require.NoError(t, Unlink("fdp.t.x"), "unlinking a missing segment is not an error")
		// The name can be created again.
		s2, err := Create("fdp.t.x", layout.HeaderSize)
		require.NoError(t, err)
		require.Equal(t, byte(0), s2.Data[100])
		require.False(t, s.Current(), "the name now holds another file")
		require.True(t, s2.Current())
		require.NoError(t, s2.Close())
		require.False(t, s2.Current(), "closed")
		require.NoError(t, Unlink("fdp.t.x"))
		_, err = os.Stat(s.Path)
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestCreateExisting(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		s, err := Create("fdp.t.x", layout.HeaderSize)
		require.NoError(t, err)
		defer s.Close()
		s.Data[0] = 1
		_, err = Create("fdp.t.x", 2*layout.HeaderSize)
		require.ErrorIs(t, err, os.ErrExist)
		require.ErrorContains(t, err, "fdp/shm: create")
		st, err := os.Stat(s.Path)
		require.NoError(t, err)
		require.Equal(t, int64(layout.HeaderSize), st.Size(), "existing segment untouched")
		require.Equal(t, byte(1), s.Data[0])

		// Concurrent creators: exactly one wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, exists := 0, 0
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := Create("fdp.t.race", layout.HeaderSize)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					wins++
					_ = c.Close()
				} else if errors.Is(err, os.ErrExist) {
					exists++
				}
			}()
		}
		wg.Wait()
		require.Equal(t, 1, wins)
		require.Equal(t, 7, exists)
	})
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		_, err := Create("fdp.t.huge", 1<<62) // ftruncate or mmap fails
		require.Error(t, err)
		_, err = os.Lstat(filepath.Join(Dir, "fdp.t.huge"))
		require.ErrorIs(t, err, os.ErrNotExist, "a failed Create unlinks its file")
		_, err = Create("fdp.t.small", layout.HeaderSize-1)
		require.ErrorContains(t, err, "below")
		Dir = filepath.Join(Dir, "missing")
		_, err = Create("fdp.t.nodir", layout.HeaderSize)
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestModeIgnoresUmask(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		for i, mask := range []int{0, 0o022, 0o777} {
			old := syscall.Umask(mask)
			name := fmt.Sprintf("fdp.t.m%d", i)
			s, err := Create(name, layout.HeaderSize)
			syscall.Umask(old)
			require.NoError(t, err, "umask %#o", mask)
			st, err := os.Stat(s.Path)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), st.Mode(), "umask %#o", mask)
			require.NoError(t, s.Close())
			r, err := Open(name, true)
			require.NoError(t, err, "umask %#o", mask)
			require.NoError(t, r.Close())
		}
	})
}

func TestSymlinkRefused(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		other := t.TempDir()
		target := filepath.Join(other, "target")
		content := bytes.Repeat([]byte{0x5a}, layout.HeaderSize)
		require.NoError(t, os.WriteFile(target, content, 0o600))
		require.NoError(t, os.Symlink(target, filepath.Join(Dir, "fdp.t.link")))
		dangling := filepath.Join(other, "dangling")
		require.NoError(t, os.Symlink(dangling, filepath.Join(Dir, "fdp.t.dangle")))

		for _, w := range []bool{false, true} {
			_, err := Open("fdp.t.link", w)
			require.ErrorContains(t, err, "refusing segment")
			require.ErrorContains(t, err, "symlink")
		}
		_, err := OpenPath(filepath.Join(Dir, "fdp.t.link"))
		require.ErrorContains(t, err, "symlink")

		_, err = Create("fdp.t.link", 2*layout.HeaderSize)
		require.ErrorIs(t, err, os.ErrExist)
		_, err = Create("fdp.t.dangle", layout.HeaderSize)
		require.ErrorIs(t, err, os.ErrExist)
		got, err := os.ReadFile(target)
		require.NoError(t, err)
		require.Equal(t, content, got, "symlink target untouched")
		_, err = os.Lstat(dangling)
		require.ErrorIs(t, err, os.ErrNotExist, "no file created through a dangling symlink")

		in := states(t)["fdp.t.link"]
		require.Equal(t, StateCorrupt, in.State)
		require.ErrorContains(t, in.Err, "not a regular file")
	})
}

func TestOpenRefusesBadFiles(t *testing.T) {
	dir := useTempDir(t)
	p := filepath.Join(dir, "fdp.t.open")
	require.NoError(t, os.WriteFile(p, make([]byte, layout.HeaderSize), 0o600))
	require.NoError(t, os.Chmod(p, 0o640))
	_, err := Open("fdp.t.open", false)
	require.ErrorContains(t, err, "fdp/shm: refusing segment")
	require.ErrorContains(t, err, "group or other")
	s, err := OpenPath(p)
	require.NoError(t, err, "OpenPath does not check owner or mode")
	require.False(t, s.Writable)
	require.Equal(t, "fdp.t.open", s.Name)
	require.NoError(t, s.Close())

	small := filepath.Join(dir, "fdp.t.small")
	require.NoError(t, os.WriteFile(small, make([]byte, 100), 0o600))
	_, err = Open("fdp.t.small", false)
	require.ErrorContains(t, err, "below the 4096-byte header")
	_, err = OpenPath(small)
	require.ErrorContains(t, err, "below the 4096-byte header")

	require.NoError(t, os.Mkdir(filepath.Join(dir, "fdp.t.dir"), 0o700))
	_, err = Open("fdp.t.dir", false)
	require.ErrorContains(t, err, "not a regular file")

	// A FIFO must neither block Open nor List.
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "fdp.t.fifo"), 0o600))
	_, err = Open("fdp.t.fifo", false)
	require.ErrorContains(t, err, "not a regular file")
	require.Equal(t, StateCorrupt, states(t)["fdp.t.fifo"].State)

	if os.Geteuid() == 0 {
		// Root can give a file away: it is foreign and never touched.
		f := filepath.Join(dir, "fdp.t.foreign")
		require.NoError(t, os.WriteFile(f, make([]byte, layout.HeaderSize), 0o600))
		require.NoError(t, os.Chown(f, 4242, 4242))
		_, err = Open("fdp.t.foreign", false)
		require.ErrorContains(t, err, "owned by uid 4242")
		in := states(t)["fdp.t.foreign"]
		require.Equal(t, StateForeign, in.State)
		require.Error(t, in.Err)
		removed, err := GC("")
		require.NoError(t, err)
		require.NotContains(t, removed, "fdp.t.foreign")
		_, err = os.Stat(f)
		require.NoError(t, err)
	}
}

// TestReadOnlyMappingFaults: a child maps a segment read-only and writes to
// it; it must die of the fault (SIGSEGV/SIGBUS, or Go's fault handler exiting
// with status 2), and the byte must be unchanged.
func TestReadOnlyMappingFaults(t *testing.T) {
	useTempDir(t)
	s, err := Create("fdp.t.ro", layout.HeaderSize)
	require.NoError(t, err)
	defer s.Close()
	c := startChild(t, "rofault", "FDP_CHILD_SEG=fdp.t.ro")
	require.Equal(t, "mapped", c.line(t))
	rest, _ := io.ReadAll(c.out)
	err = c.cmd.Wait()
	require.NotContains(t, string(rest), "wrote", "write through a PROT_READ mapping succeeded")
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	ws := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		require.Contains(t, []syscall.Signal{syscall.SIGSEGV, syscall.SIGBUS}, ws.Signal())
	} else {
		require.Equal(t, 2, ws.ExitStatus(), "stderr: %s", c.stderr.String())
		require.Contains(t, c.stderr.String(), "unexpected fault address")
	}
	require.Equal(t, byte(0), s.Data[layout.HeaderSize-1])
}

func TestListGCWithKilledCreators(t *testing.T) {
	useTempDir(t)
	live, err := Create("fdp.t.live", 2*layout.HeaderSize)
	require.NoError(t, err)
	defer live.Close()
	writeReadyHeader(t, live, "t", uint32(os.Getpid()), SelfStartTime())

	modes := []string{"ready", "notready", "blank", "closed"}
	kids := map[string]*child{}
	for _, m := range modes {
		kids[m] = startCreator(t, "fdp.t."+m, m)
	}
	// Garbage and truncated files, and a live-pid header with a wrong size.
	junk := make([]byte, 2*layout.HeaderSize)
	_, _ = rand.Read(junk)
	require.NoError(t, os.WriteFile(filepath.Join(Dir, "fdp.t.junk"), junk, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(Dir, "fdp.t.trunc"), []byte("FDPSEGMT"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(Dir, "fdp.t.sock"), nil, 0o600))   // control socket: ignored
	require.NoError(t, os.WriteFile(filepath.Join(Dir, "other.t.x"), nil, 0o600))    // not ours: ignored
	require.NoError(t, os.WriteFile(filepath.Join(Dir, "fdp.u.other"), junk, 0o600)) // other instance

	// While the creators run.
	st := states(t)
	want := map[string]string{
		"fdp.t.live": StateLive, "fdp.t.ready": StateLive, "fdp.t.notready": StateInitialising,
		"fdp.t.blank": StateInitialising, "fdp.t.closed": StateLive,
		"fdp.t.junk": StateCorrupt, "fdp.t.trunc": StateCorrupt, "fdp.u.other": StateCorrupt,
	}
	got := map[string]string{}
	for n, in := range st {
		got[n] = in.State
	}
	require.Equal(t, want, got)
	require.True(t, st["fdp.t.ready"].Locked)
	require.False(t, st["fdp.t.closed"].Locked, "closing releases the creator lock")
	require.True(t, st["fdp.t.live"].Locked, "flock conflicts between open files of one process too")
	require.Equal(t, uint32(kids["ready"].pid), st["fdp.t.ready"].PID)
	require.Equal(t, "t", st["fdp.t.ready"].Instance)
	require.Equal(t, "ready", st["fdp.t.ready"].Kind)
	require.Equal(t, int64(2*layout.HeaderSize), st["fdp.t.ready"].Size)
	require.NotNil(t, st["fdp.t.ready"].Header)
	require.Equal(t, layout.KindLeases, st["fdp.t.ready"].Header.Kind)
	require.ErrorIs(t, st["fdp.t.notready"].Err, layout.ErrNotReady)
	require.ErrorIs(t, st["fdp.t.blank"].Err, layout.ErrBadMagic)
	require.ErrorIs(t, st["fdp.t.junk"].Err, layout.ErrBadMagic)
	require.Nil(t, st["fdp.t.junk"].Header)
	require.ErrorIs(t, st["fdp.t.trunc"].Err, layout.ErrTooSmall)

	removed, err := GC("t")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"fdp.t.junk", "fdp.t.trunc"}, removed, "only unreadable unlocked files while creators live")

	for _, m := range modes {
		kids[m].kill(t)
	}
	st = states(t)
	got = map[string]string{}
	for n, in := range st {
		got[n] = in.State
	}
	require.Equal(t, map[string]string{
		"fdp.t.live": StateLive, "fdp.t.ready": StateStale, "fdp.t.notready": StateStale,
		"fdp.t.blank": StateCorrupt, "fdp.t.closed": StateStale, "fdp.u.other": StateCorrupt,
	}, got)
	require.False(t, st["fdp.t.ready"].Locked, "a killed creator's lock is released")
	require.ErrorContains(t, st["fdp.t.ready"].Err, "is dead")
	require.ErrorIs(t, st["fdp.t.notready"].Err, layout.ErrNotReady)

	removed, err = GC("t")
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"fdp.t.ready", "fdp.t.notready", "fdp.t.blank", "fdp.t.closed"}, removed)
	_, err = os.Stat(live.Path)
	require.NoError(t, err, "a live segment is never removed")
	_, err = os.Stat(filepath.Join(Dir, "fdp.u.other"))
	require.NoError(t, err, "GC(instance) leaves other instances alone")

	removed, err = GC("")
	require.NoError(t, err)
	require.Equal(t, []string{"fdp.u.other"}, removed)
	_, err = os.Stat(live.Path)
	require.NoError(t, err)
	_, err = GC("bad/inst")
	require.Error(t, err)
}

// An undecodable header is removed even though its pid is ours (nobody can
// use it); a not-ready one whose creator runs (without the lock) is kept.
func TestGCCorruptAndNotReady(t *testing.T) {
	useTempDir(t)
	s, err := Create("fdp.t.c", 2*layout.HeaderSize)
	require.NoError(t, err)
	writeReadyHeader(t, s, "t", uint32(os.Getpid()), SelfStartTime())
	require.NoError(t, s.Close())
	// Break a section entry but keep magic and checksum valid: not decodable.
	b, err := os.ReadFile(s.Path)
	require.NoError(t, err)
	require.Equal(t, StateLive, states(t)["fdp.t.c"].State)
	b[layout.OffTotalSize] = 0xff
	require.NoError(t, os.WriteFile(s.Path, b, 0o600))
	in := states(t)["fdp.t.c"]
	require.Equal(t, StateCorrupt, in.State)
	require.ErrorIs(t, in.Err, layout.ErrBadChecksum)
	require.True(t, Removable(in), "no decodable header: nobody to keep it for")

	// Not-ready header, creator alive (us, lock released): initialising, kept.
	s2, err := Create("fdp.t.nr", layout.HeaderSize)
	require.NoError(t, err)
	require.NoError(t, layout.EncodeHeader(s2.Data, &layout.Header{Kind: layout.KindWorld, TotalSize: layout.HeaderSize,
		Instance: "t", CreatorPID: uint32(os.Getpid()), CreatorTime: SelfStartTime()}))
	require.NoError(t, s2.Close())
	require.Equal(t, StateInitialising, states(t)["fdp.t.nr"].State)
	// An empty file whose creator lock is held (a fallback-path Create
	// between open and ftruncate, or a header being written) is initialising.
	empty := filepath.Join(Dir, "fdp.t.empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	badhdr := filepath.Join(Dir, "fdp.t.badhdr")
	require.NoError(t, os.WriteFile(badhdr, make([]byte, layout.HeaderSize), 0o600))
	var locks []*os.File
	for _, p := range []string{empty, badhdr} {
		f, err := os.Open(p)
		require.NoError(t, err)
		require.NoError(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB))
		locks = append(locks, f)
	}
	st := states(t)
	require.Equal(t, StateInitialising, st["fdp.t.empty"].State)
	require.ErrorIs(t, st["fdp.t.empty"].Err, layout.ErrTooSmall)
	require.Equal(t, StateInitialising, st["fdp.t.badhdr"].State)
	require.ErrorIs(t, st["fdp.t.badhdr"].Err, layout.ErrBadMagic)
	require.True(t, st["fdp.t.empty"].Locked)

	removed, err := GC("t")
	require.NoError(t, err)
	require.Equal(t, []string{"fdp.t.c"}, removed)
	_, err = os.Stat(filepath.Join(Dir, "fdp.t.nr"))
	require.NoError(t, err)

	for _, f := range locks {
		require.NoError(t, f.Close())
	}
	require.Equal(t, StateCorrupt, states(t)["fdp.t.empty"].State)
	removed, err = GC("t")
	require.NoError(t, err)
	require.Equal(t, []string{"fdp.t.badhdr", "fdp.t.empty"}, removed)
}

func TestRemoveInstance(t *testing.T) {
	useTempDir(t)
	for _, n := range []string{"fdp.a.world", "fdp.a.mod.1", "fdp.ab.world", "fdp.b.world"} {
		s, err := Create(n, layout.HeaderSize)
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	require.NoError(t, os.WriteFile(filepath.Join(Dir, "fdp.a.sock"), nil, 0o600))
	_, err := RemoveInstance("a")
	require.NoError(t, err)
	var left []string
	ents, err := os.ReadDir(Dir)
	require.NoError(t, err)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	require.Equal(t, []string{"fdp.a.sock", "fdp.ab.world", "fdp.b.world"}, left, "a file named like the socket that is no socket is not judged")
	_, err = RemoveInstance("a.b")
	require.Error(t, err)
	_, err = RemoveInstance("")
	require.Error(t, err)
}

func TestProcStartTime(t *testing.T) {
	self, err := ProcStartTime(os.Getpid())
	require.NoError(t, err)
	require.NotZero(t, self)
	require.Equal(t, self, SelfStartTime())

	// Independent check: boot time + start ticks / USER_HZ (100 on Linux) is
	// when this process started, shortly before testStart.
	stat, err := os.ReadFile("/proc/stat")
	require.NoError(t, err)
	var btime int64
	for _, l := range strings.Split(string(stat), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			btime, err = strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
		}
	}
	require.NotZero(t, btime)
	started := time.Unix(btime, 0).Add(time.Duration(self) * 10 * time.Millisecond)
	require.WithinRange(t, started, testStart.Add(-60*time.Second), testStart.Add(2*time.Second))

	require.True(t, ProcessAlive(uint32(os.Getpid()), self))
	require.False(t, ProcessAlive(uint32(os.Getpid()), self+1), "same pid, other start time: another process")
	require.False(t, ProcessAlive(0, 0))
	require.False(t, ProcessAlive(1<<30, self), "no such pid")
	_, err = ProcStartTime(1 << 30)
	require.ErrorContains(t, err, "fdp/shm:")

	// A child started after us has a later (or equal) start time; once
	// SIGKILLed it is dead — already as a zombie, before it is reaped.
	useTempDir(t)
	c := startCreator(t, "fdp.t.z", "ready")
	cs, err := ProcStartTime(c.pid)
	require.NoError(t, err)
	require.GreaterOrEqual(t, cs, self)
	require.True(t, ProcessAlive(uint32(c.pid), cs))
	require.NoError(t, syscall.Kill(c.pid, syscall.SIGKILL))
	var info unix.Siginfo
	require.NoError(t, unix.Waitid(unix.P_PID, c.pid, &info, unix.WEXITED|unix.WNOWAIT, nil))
	zs, state, err := procStat(c.pid)
	require.NoError(t, err, "zombie still has /proc entry")
	require.Equal(t, byte('Z'), state)
	require.Equal(t, cs, zs)
	require.False(t, ProcessAlive(uint32(c.pid), cs), "a zombie is dead")
	require.Equal(t, StateStale, states(t)["fdp.t.z"].State)
	_ = c.cmd.Wait()
	require.False(t, ProcessAlive(uint32(c.pid), cs))
}

func TestParseStat(t *testing.T) {
	tail := " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 20 21\n"
	for _, comm := range []string{"(sleep)", "(a b)", "(a) b)", "(x) S 1 2)", "())", "( )"} {
		st, state, err := parseStat([]byte("123 " + comm + " R" + tail))
		require.NoError(t, err, comm)
		require.Equal(t, uint64(777), st, comm)
		require.Equal(t, byte('R'), state, comm)
	}
	for _, bad := range []string{"", "123 (x", "123 (x) R 1 2", "123 (x) RR" + tail, "123 (x) R" + strings.Replace(tail, "777", "-1", 1)} {
		_, _, err := parseStat([]byte(bad))
		require.Error(t, err, "%q", bad)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 99 20"))
	f.Add([]byte("1 (x) Z"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, state, err := parseStat(b)
		if err != nil {
			return
		}
		i := bytes.LastIndexByte(b, ')')
		fields := bytes.Fields(b[i+1:])
		want, perr := strconv.ParseUint(string(fields[19]), 10, 64)
		if perr != nil || want != st || state != fields[0][0] || len(fields[0]) != 1 {
			t.Fatalf("parsed (%d,%c) from %q", st, state, b)
		}
	})
}

// TestRealDevShm exercises the default directory when it exists.
func TestRealDevShm(t *testing.T) {
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		t.Skip("no /dev/shm")
	}
	old := Dir
	Dir = "/dev/shm"
	t.Cleanup(func() { Dir = old })
	inst := uniqueInstance()
	t.Cleanup(func() { _, _ = RemoveInstance(inst) })
	name := SegmentName(inst, "world")
	s, err := Create(name, 2*layout.HeaderSize)
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, "/dev/shm/"+name, s.Path)
	writeReadyHeader(t, s, inst, uint32(os.Getpid()), SelfStartTime())
	st, err := os.Stat(s.Path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode())
	_, err = Create(name, layout.HeaderSize)
	require.ErrorIs(t, err, os.ErrExist)

	r, err := Open(name, false)
	require.NoError(t, err)
	h, err := layout.DecodeHeader(r.Data)
	require.NoError(t, err)
	require.Equal(t, inst, h.Instance)
	require.NoError(t, r.Close())

	in := states(t)[name]
	require.Equal(t, StateLive, in.State)
	require.Equal(t, inst, in.Instance)
	removed, err := GC(inst)
	require.NoError(t, err)
	require.Empty(t, removed)
	_, err = RemoveInstance(inst)
	require.NoError(t, err)
	_, err = os.Stat(s.Path)
	require.ErrorIs(t, err, os.ErrNotExist)
}
