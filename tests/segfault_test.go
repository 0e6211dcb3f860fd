package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// A module can truncate its own segment, or punch a hole in it and fill the
// shm directory, through the read-write descriptor of its welcome (outside
// tester, findings 1 and 2): the engine's next access to the segment
// faults. These tests run such a module process against an engine running
// its frames (Engine.Run) and check that the engine survives it: the module
// is counted (ModuleStats.SegmentFaults), logged and disconnected, the other
// modules tick on, and the module can join again with a new segment.

// segfaultChild runs the child role named by $FDP_SEGFAULT_ROLE and exits;
// it returns when this process is not such a child.
func segfaultChild() {
	role := os.Getenv("FDP_SEGFAULT_ROLE")
	if role == "" {
		return
	}
	s := newSchema()
	name, inst := os.Getenv("FDP_MODULE"), os.Getenv("FDP_INSTANCE")
	var m module.Module
	switch role {
	case "honest":
		m = &honestModule{s: s, name: name}
	case "truncate":
		m = &segVandal{name: name, inst: inst, after: 1 + rand.Intn(4), ret: rand.Intn(2) == 0}
	case "punch":
		m = &holePuncher{name: name, inst: inst}
	default:
		fmt.Fprintln(os.Stderr, "unknown segfault role", role)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), m, module.Options{Instance: inst, Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// segVandal ticks normally, then in its tick number after it truncates its
// own segment to 0 bytes through the descriptor the engine handed it, and
// then either hangs in the tick or returns (ret: the SDK's own done store
// then faults in this process).
type segVandal struct {
	name, inst string
	ret        bool
	after, n   int
}

func (v *segVandal) Spec() module.Spec { return module.Spec{Name: v.name, Tier: module.Fast, Every: 1} }

func (v *segVandal) Tick(*module.View, *module.Commands, time.Duration) error {
	v.n++
	if v.n < v.after {
		return nil
	}
	fd, err := ownSegmentFD(v.inst)
	if err != nil {
		fmt.Println("ERROR", err)
		return err
	}
	{
		if err := unix.Ftruncate(fd, 0); err != nil {
			fmt.Println("ERROR truncate", err)
			return err
		}
		fmt.Println("truncated")
	}
	if !v.ret {
		<-time.After(time.Minute) // hang in the tick: the test kills this process
	}
	return nil
}

// holePuncher ticks normally; when a line arrives on its stdin (the test
// stepping the engine sends it between frames), it punches a hole over all
// of its own segment through its descriptor and fills the shm directory,
// then prints "punched".
type holePuncher struct {
	name, inst string
	started    bool
}

func (p *holePuncher) Spec() module.Spec {
	return module.Spec{Name: p.name, Tier: module.Fast, Every: 1}
}

func (p *holePuncher) Tick(*module.View, *module.Commands, time.Duration) error {
	if !p.started {
		p.started = true
		fd, err := ownSegmentFD(p.inst)
		if err != nil {
			fmt.Println("ERROR", err)
			return err
		}
		go p.punch(fd)
		fmt.Println("armed")
	}
	return nil
}

func (p *holePuncher) punch(fd int) {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Println("ERROR stdin", err)
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		fmt.Println("ERROR fstat", err)
		return
	}
	if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, st.Size); err != nil {
		fmt.Println("ERROR punch", err)
		return
	}
	f, err := os.OpenFile(filepath.Join(shm.Dir, "filler"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Println("ERROR filler", err)
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var werr error
	for werr == nil {
		_, werr = f.Write(buf)
	}
	if !errors.Is(werr, unix.ENOSPC) {
		fmt.Println("ERROR fill", werr)
		return
	}
	fmt.Println("punched")
}

// ownSegmentFD finds the descriptor of this module's own segment (the one
// the welcome passed) in /proc/self/fd: the one open on the inode of a
// module segment file of inst (its link names the engine's anonymous
// creation file, not the segment's name).
func ownSegmentFD(inst string) (int, error) {
	paths, err := filepath.Glob(filepath.Join(shm.Dir, shm.SegmentName(inst, "mod.*")))
	if err != nil {
		return -1, err
	}
	inodes := map[uint64]bool{}
	for _, p := range paths {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			inodes[st.Ino] = true
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1, err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && inodes[st.Ino] {
			return fd, nil
		}
	}
	return -1, fmt.Errorf("no descriptor of a module segment of %s (%d segment files)", inst, len(paths))
}

// runRig is an engine running its frames (Engine.Run) in the test process.
type runRig struct {
	t      *testing.T
	eng    *host.Engine
	inst   string
	log    *syncBuf
	errc   chan error
	cancel context.CancelFunc
	rate   int
	start  time.Time
	frames func() uint64
}

func newRunRig(t *testing.T, cfg host.Config) *runRig {
	s := newSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 16})
	require.NoError(t, err)
	buf := &syncBuf{}
	cfg.Instance = uniqueInstance(t, "sf")
	cfg.FrameRate, cfg.FastDeadline = 100, 5*time.Millisecond
	cfg.RingBytes, cfg.Slots = 1<<16, 4
	if cfg.EventLogBytes == 0 {
		cfg.EventLogBytes = 1 << 16
	}
	cfg.Logger = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	eng, err := host.New(cfg, w, nil)
	require.NoError(t, err)
	r := &runRig{t: t, eng: eng, inst: cfg.Instance, log: buf, errc: make(chan error, 1), rate: cfg.FrameRate}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	frames := make(chan uint64, 1)
	frames <- 0
	r.frames = func() uint64 { f := <-frames; frames <- f; return f }
	go func() {
		r.errc <- eng.Run(ctx, func(st host.FrameStats) { <-frames; frames <- st.Frame })
	}()
	r.start = time.Now()
	t.Cleanup(func() {
		cancel()
		<-r.errc
		eng.Close()
	})
	return r
}

// spawn starts a child of role as module name; its output is collected.
func (r *runRig) spawn(test, role, name string, cred *syscall.Credential, exe string) (*exec.Cmd, *lineWriter) {
	if exe == "" {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe, "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), "FDP_SEGFAULT_ROLE="+role, "FDP_MODULE="+name, "FDP_INSTANCE="+r.inst)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	out := &lineWriter{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(r.t, cmd.Start())
	r.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, out
}

func (r *runRig) module(name string) host.ModuleInfo {
	m, ok := moduleInfo(r.eng, name)
	require.True(r.t, ok, "no module %q", name)
	return m
}

func (r *runRig) running(name string, joins uint64) func() bool {
	return func() bool {
		m, ok := moduleInfo(r.eng, name)
		return ok && m.Stats.Joins == joins && m.State != host.StateDead && m.Stats.Runs > 0
	}
}

// requireAlive asserts that Run has not returned and that frames ran at
// a good part of the rate since the rig started.
func (r *runRig) requireAlive() {
	select {
	case err := <-r.errc:
		r.errc <- err
		r.t.Fatalf("the engine stopped: %v\n%s", err, r.log.String())
	default:
	}
	elapsed := time.Since(r.start)
	require.GreaterOrEqual(r.t, r.frames(), uint64(elapsed.Seconds()*float64(r.rate)/4),
		"frames in %v at %d Hz", elapsed, r.rate)
}

// TestModuleTruncatesItsSegment: a module process truncates its own segment
// through its descriptor at a random tick, again and again (a new process
// each time, rejoining under the same name), while an honest module ticks.
// Each truncation is counted once for the module and logged; the engine
// keeps publishing, the honest module's ticks and commands go on, and the
// vandal rejoins every time with a new segment.
func TestModuleTruncatesItsSegment(t *testing.T) {
	segfaultChild()
	r := newRunRig(t, host.Config{})
	const test = "TestModuleTruncatesItsSegment"
	r.spawn(test, "honest", "honest", nil, "")
	waitFor(t, "the honest module ticking", 5*time.Second, r.running("honest", 1))
	const cycles = 4
	for i := uint64(1); i <= cycles; i++ {
		before := r.module("honest")
		cmd, out := r.spawn(test, "truncate", "vandal", nil, "")
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("vandal %d:\n%s\nengine:\n%s\nmodules: %+v", i, out.String(), r.log.String(), r.eng.Modules())
			}
		})
		waitFor(t, fmt.Sprintf("the vandal's fault %d counted", i), 5*time.Second, func() bool {
			m, ok := moduleInfo(r.eng, "vandal")
			return ok && m.Stats.SegmentFaults == i && strings.Contains(out.String(), "truncated\n")
		})
		require.NotContains(t, out.String(), "ERROR")
		m := r.module("vandal")
		require.Equal(t, host.StateDead, m.State)
		require.Equal(t, i, m.Stats.Joins, "it joined once per process")
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		waitFor(t, "the honest module ticking on", 5*time.Second, func() bool {
			h := r.module("honest")
			// Played back: applied, or rejected at its entity quota (see
			// TestModulePunchesItsSegmentOnFullShm).
			return h.Stats.Runs > before.Stats.Runs+5 && h.Stats.Applied+h.Stats.Rejected > before.Stats.Applied+before.Stats.Rejected
		})
		r.requireAlive()
	}
	// The last vandal process joins and ticks on its new segment.
	r.spawn(test, "honest", "vandal", nil, "")
	waitFor(t, "the vandal rejoined", 5*time.Second, r.running("vandal", cycles+1))
	r.requireAlive()
	h := r.module("honest")
	require.Zero(t, h.Stats.Failures)
	require.Zero(t, h.Stats.Rejected)
	require.Zero(t, h.Stats.SegmentFaults)
	require.EqualValues(t, cycles, r.module("vandal").Stats.SegmentFaults)
	logs := r.log.String()
	require.Contains(t, logs, "its segment was truncated or punched")
	require.Contains(t, logs, "module=vandal")
	require.NotContains(t, logs, "module=honest")
}

// TestModulePunchesItsSegmentOnFullShm: a module punches a hole over all of
// its own segment and fills the (small tmpfs) shm directory, between two
// frames: the engine's next access to the segment cannot get a page and
// faults. The module is counted and disconnected, the frame goes on, the
// honest module ticks on, and once there is space again the module
// rejoins.
func TestModulePunchesItsSegmentOnFullShm(t *testing.T) {
	segfaultChild()
	dir := testutil.MountTmpfs(t, 16<<20)
	old := shm.Dir
	shm.Dir = dir
	t.Cleanup(func() { shm.Dir = old })
	t.Setenv("FDP_SHM_DIR", dir)
	r := newHostileRig(t)
	const test = "TestModulePunchesItsSegmentOnFullShm"
	spawn := func(role, name string) (*exec.Cmd, *lineWriter, io.WriteCloser) {
		cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
		cmd.Env = append(os.Environ(), "FDP_SEGFAULT_ROLE="+role, "FDP_MODULE="+name, "FDP_INSTANCE="+r.inst)
		out := &lineWriter{}
		cmd.Stdout, cmd.Stderr = out, out
		in, err := cmd.StdinPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, out, in
	}
	spawn("honest", "honest")
	cmd, out, in := spawn("punch", "vandal")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("vandal:\n%s\nengine:\n%s\nmodules: %+v", out.String(), r.log.String(), r.eng.Modules())
		}
	})
	r.stepUntil("both modules ticking", 10*time.Second, func() bool {
		return r.running("honest", "vandal")() && strings.Contains(out.String(), "armed\n")
	})
	// Between frames: the module punches its segment and fills the shm
	// directory; the engine touches nothing meanwhile.
	_, err := io.WriteString(in, "go\n")
	require.NoError(t, err)
	waitFor(t, "the hole punched and the shm directory full", 5*time.Second, func() bool {
		return strings.Contains(out.String(), "punched\n") || strings.Contains(out.String(), "ERROR")
	})
	require.NotContains(t, out.String(), "ERROR")
	var st unix.Statfs_t
	require.NoError(t, unix.Statfs(dir, &st))
	require.Zero(t, st.Bavail, "the shm directory is full")
	before := r.module("honest")
	fr := r.eng.Step()
	require.NoError(t, fr.PublishErr)
	m := r.module("vandal")
	require.EqualValues(t, 1, m.Stats.SegmentFaults, "the engine's first frame after the punch faulted in the segment")
	require.Equal(t, host.StateDead, m.State)
	r.stepUntil("the honest module ticking on a full shm directory", 5*time.Second, func() bool {
		// Its batches are still played back: applied, or rejected once it
		// reached its entity quota (it creates one entity per tick, and
		// a loaded machine gives it thousands of ticks before this point).
		h := r.module("honest")
		played := h.Stats.Applied + h.Stats.Rejected
		return h.Stats.Runs > before.Stats.Runs+5 && played > before.Stats.Applied+before.Stats.Rejected
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	require.NoError(t, os.Remove(filepath.Join(dir, "filler")))
	spawn("honest", "vandal")
	r.stepUntil("the vandal rejoined", 5*time.Second, func() bool {
		m, ok := moduleInfo(r.eng, "vandal")
		return ok && m.Stats.Joins == 2 && m.State != host.StateDead && m.Stats.Applied > 0
	})
	h := r.module("honest")
	require.Zero(t, h.Stats.Failures)
	require.Zero(t, h.Stats.SegmentFaults)
	require.EqualValues(t, 1, r.module("vandal").Stats.SegmentFaults)
	require.Contains(t, r.log.String(), "its segment was truncated or punched")
}
