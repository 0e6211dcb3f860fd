package tests

// Hostile module processes (issue 11): each test runs a module written to do
// harm, as a real process speaking the control protocol itself, next to
// well-behaved modules, and shows that the engine keeps publishing every
// frame and the other modules' ticks go on.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// isoEnv selects the role of a hostile child process.
const isoEnv = "FDP_ISO_ROLE"

// TestIsolationChild is the body of the hostile child processes; it does
// nothing in a normal test run.
func TestIsolationChild(t *testing.T) {
	role := os.Getenv(isoEnv)
	if role == "" {
		t.Skip("child process of the hostile tests")
	}
	os.Exit(isoChild(role))
}

// isoSpawn starts a hostile child with role and extra environment; its
// stdout lines arrive on the returned channel.
func (r *rig) isoSpawn(name, role string, env ...string) <-chan string {
	return r.isoSpawnStdin(name, role, env...).out // stdin stays open, unused
}

// stepUntilLine runs frames until the child prints a line starting with
// prefix and returns it; a frame that does not publish fails the test.
func (r *rig) stepUntilLine(lines <-chan string, prefix string) string {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			require.True(r.t, ok, "child exited before printing %q", prefix)
			if strings.HasPrefix(l, prefix) {
				return l
			}
			r.t.Logf("child: %s", l)
			continue
		default:
		}
		require.True(r.t, time.Now().Before(deadline), "timed out waiting for %q; modules %+v", prefix, r.eng.Modules())
		r.mustPublish()
	}
}

// mustPublish runs one frame and fails the test unless it published.
func (r *rig) mustPublish() host.FrameStats {
	r.t.Helper()
	st := r.eng.Step()
	require.NoError(r.t, st.PublishErr, "frame %d did not publish", st.Frame)
	return st
}

// waitExit waits for the i-th process of the rig to exit.
func (r *rig) waitExit(i int) {
	_ = r.cmds[i].Wait()
}

// isoChild speaks the control protocol itself (not through module.Run)
// and does what role says. It prints one line per result.
func isoChild(role string) int {
	s := newSchema()
	hello := ipc.Hello{Name: os.Getenv("FDP_MODULE"), Tier: ipc.TierSlow, Every: 1, Mask: s.reg.Mask()[0],
		SchemaHash: s.reg.SchemaHash()}
	inst := os.Getenv("FDP_INSTANCE")
	switch role {
	case "bad-mask":
		hello.Mask |= 1 << 40
	case "old-proto":
		hello.ProtoVersion = 2
	case "fd-rights", "forge":
		hello.Tier = ipc.TierFast
	case "snapshot-exit":
		hello.Group = "solo" // a snapshot of its own
	}
	conn, wel, err := ipc.Dial(inst, hello, 5*time.Second)
	if err != nil {
		fmt.Printf("REFUSED %v\n", err)
		return 0
	}
	defer conn.Close()
	switch role {
	case "fd-rights":
		return isoFDRights(wel)
	case "snapshot-exit":
		return isoSnapshotExit(inst, wel)
	case "forge":
		return isoForge(wel)
	}
	fmt.Printf("UNEXPECTED welcome in role %s\n", role)
	return 1
}

// isoFDRights tries to gain write access through the descriptors of
// its welcome.
func isoFDRights(wel ipc.Welcome) int {
	for i, what := range []string{"world", "events", "module"} {
		fd := int(wel.Files[i].Fd())
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			fmt.Printf("ERROR fstat %s: %v\n", what, err)
			return 1
		}
		fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		res := []string{what, "access=" + accessMode(fl)}
		if _, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			res = append(res, "mmap-write="+errName(err))
		} else {
			res = append(res, "mmap-write=ok")
		}
		if _, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED); err != nil {
			res = append(res, "mmap-read="+errName(err))
		} else {
			res = append(res, "mmap-read=ok")
		}
		if what != "module" { // never truncate the segment we need
			if err := unix.Ftruncate(fd, 8192); err != nil {
				res = append(res, "ftruncate="+errName(err))
			} else {
				res = append(res, "ftruncate=ok")
			}
		}
		fmt.Println("FD " + strings.Join(res, " "))
	}
	fmt.Println("DONE")
	return 0
}

func accessMode(fl int) string {
	switch fl & unix.O_ACCMODE {
	case unix.O_RDONLY:
		return "rdonly"
	case unix.O_WRONLY:
		return "wronly"
	}
	return "rdwr"
}

func errName(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	return err.Error()
}

// isoSnapshotExit waits for its first slow tick (a leased snapshot),
// scribbles over the leases segment by name (possible for the engine's own
// uid: holder bits and engine references on every slot, pins of every slot
// in external reader entries nobody owns), and exits without finishing the
// tick.
func isoSnapshotExit(inst string, wel ipc.Welcome) int {
	mod, err := shm.MapFD(wel.Files[ipc.WelcomeFDModule], wel.Segments.Module, true)
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		return 1
	}
	defer mod.Close()
	bell, err := ipc.NewDoorbell(mod.Data, layout.OffMTick, layout.OffMTickNeedWake)
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		return 1
	}
	for layout.Load64(mod.Data, layout.OffMTickFrame) == 0 {
		if _, err := bell.Wait(bell.Load(), 64, 5*time.Second); err != nil {
			fmt.Printf("ERROR no tick: %v\n", err)
			return 1
		}
	}
	slot, _ := layout.UnpackTick(layout.Load64(mod.Data, layout.OffMTickLease))
	ls, err := shm.Open(shm.SegmentName(inst, fsync.LeasesSegment), true)
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		return 1
	}
	defer ls.Close()
	ll, err := layout.DecodeLeases(ls.Data)
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		return 1
	}
	for s := 0; s < ll.Slots; s++ {
		layout.PutModuleSet(ls.Data, ll.LeaseOff(s)+layout.LeaseHolders, layout.ModuleSet{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)})
		layout.Store32(ls.Data, ll.LeaseOff(s)+layout.LeaseEngine, 1)
	}
	for i := 0; i < ll.Readers; i++ {
		o := ll.ReaderOff(i)
		if layout.Load32(ls.Data, o+layout.ReaderPID) == 0 {
			layout.Store64(ls.Data, o+layout.ReaderPin, layout.PackPin(i%ll.Slots, 2))
		}
	}
	fmt.Printf("TOOK slot=%d\n", slot)
	return 0 // exit with the tick unfinished
}

// isoForge is a fast module that reports an absurd wake latency (2^62 ns)
// for each of its own ticks, and, until a line on stdin stops it, opens
// another module's segment by name ($FDP_VICTIM: possible for the engine's
// own uid) and keeps forging its done frame (a frame far beyond its ticks)
// and its pin word.
func isoForge(wel ipc.Welcome) int {
	mod, err := shm.MapFD(wel.Files[ipc.WelcomeFDModule], wel.Segments.Module, true)
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		return 1
	}
	victim, err := shm.Open(os.Getenv("FDP_VICTIM"), true)
	if err != nil {
		fmt.Printf("ERROR %v\n", err)
		return 1
	}
	stop := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(stop)
	}()
	tick, _ := ipc.NewDoorbell(mod.Data, layout.OffMTick, layout.OffMTickNeedWake)
	done, _ := ipc.NewDoorbell(mod.Data, layout.OffMDone, layout.OffMDoneNeedWake)
	last, announced := tick.Load(), false // a tick rung before this load is pending: see the loop
	for {
		select {
		case <-stop:
			fmt.Println("STOPPED")
			return 0
		default:
		}
		layout.Store64(victim.Data, layout.OffMDoneFrame, 1<<40)
		layout.Store64(victim.Data, layout.OffMPin, layout.PackPin(0, 2))
		if layout.Load64(mod.Data, layout.OffMTickFrame) <= layout.Load64(mod.Data, layout.OffMDoneFrame) {
			v, err := tick.Wait(last, 64, time.Millisecond) // the forging rate, not a synchronisation
			if err == nil {
				last = v
			}
			continue
		}
		layout.Store64(mod.Data, layout.OffMWakeNanos, 1<<62)
		layout.Store64(mod.Data, layout.OffMDoneFrame, layout.Load64(mod.Data, layout.OffMTickFrame))
		_, _ = done.Ring()
		if !announced {
			fmt.Println("FORGING")
			announced = true
		}
	}
}

// TestIsolationSnapshotHolderCannotFreezePublishing (finding 1): twelve
// modules in a row take a slow-tier snapshot and exit in the middle of the
// tick, each after scribbling holder bits, engine references and orphan pins
// over the whole leases segment. Before, about nine such joins held every
// slot and publishing stopped for good behind a "60 fps" status line. Now
// holders live in the engine and the leases segment is a copy: the engine
// publishes on every frame but at most one per scribble (a frame that finds
// every slot pinned by the orphan pins is counted as skipped and reclaims
// them), and a fast module next to them ticks every frame without failures.
func TestIsolationSnapshotHolderCannotFreezePublishing(t *testing.T) {
	r := newRig(t, 200)
	r.spawn("steady", "report", module.Fast, 1, "Pos", "")
	r.stepUntil("join", r.joined(1))
	const hostile = 12
	var lines []<-chan string
	for i := 0; i < hostile; i++ {
		lines = append(lines, r.isoSpawn(fmt.Sprintf("grabber-%d", i), "snapshot-exit"))
	}
	took := 0
	deadline := time.Now().Add(10 * time.Second)
	for took < hostile {
		require.True(t, time.Now().Before(deadline), "%d of %d grabbers took a snapshot", took, hostile)
		for i, ch := range lines {
			select {
			case l, ok := <-ch:
				require.True(t, ok, "grabber %d exited before its tick", i)
				require.True(t, strings.HasPrefix(l, "TOOK"), "grabber %d: %s", i, l)
				took++
				// Its exit closes the channel next: a nil channel is never
				// ready, so it is not read again.
				lines[i] = nil
			default:
			}
		}
		r.eng.Step() // a frame may find every slot pinned by the orphan pins: reclaimed
	}
	for i := 0; i < hostile; i++ {
		r.waitExit(len(r.cmds) - 1 - i)
	}
	r.stepUntil("grabber deaths seen", func() bool {
		for i := 0; i < hostile; i++ {
			if r.module(fmt.Sprintf("grabber-%d", i)).State != host.StateDead {
				return false
			}
		}
		return true
	})
	skipped := r.eng.Publisher().Skipped
	require.LessOrEqual(t, skipped, uint64(hostile), "at most one frame without a free slot per scribble")
	require.Zero(t, r.eng.LeasedSlots(), "the dead grabbers hold nothing")
	// Publishing goes on at every frame, and the steady module ticks.
	runs := r.module("steady").Stats.Runs
	for i := 0; i < 3*r.eng.Publisher().Layout().Slots; i++ {
		r.mustPublish()
	}
	m := r.module("steady")
	require.GreaterOrEqual(t, m.Stats.Runs-runs, uint64(3*r.eng.Publisher().Layout().Slots-1))
	require.Zero(t, m.Stats.Failures)
	require.Equal(t, skipped, r.eng.Publisher().Skipped, "no skipped publish after the grabbers")
	wl := r.eng.Publisher().Layout()
	require.Equal(t, skipped, layout.Load64(wl.B, layout.OffWStatSkipped), "skips are visible in the world segment's stats (engine dump/stat)")
	t.Logf("%d grabbers; %d publishes skipped and reclaimed (%d slot states reclaimed)", hostile, skipped, r.eng.ReclaimedReaders)
}

// TestIsolationHelloValidated (finding 7, and the protocol bump): a hello whose
// mask names components beyond the schema is refused with a clear error and
// counted; a version 2 module is refused with the version error.
func TestIsolationHelloValidated(t *testing.T) {
	r := newRig(t, 10)
	lines := r.isoSpawn("masky", "bad-mask")
	l := r.stepUntilLine(lines, "REFUSED")
	require.Contains(t, l, "beyond the schema")
	require.Equal(t, uint64(1), r.eng.BadMasks)
	lines = r.isoSpawn("old", "old-proto")
	l = r.stepUntilLine(lines, "REFUSED")
	require.Contains(t, l, ipc.ErrVersionMismatch.Error())
	require.Contains(t, l, "version 2")
}

// TestModuleDescriptorsReadOnly: the world and event log descriptors a
// module gets cannot be mapped writable (EACCES) nor truncated (EINVAL),
// only its own segment's can; the descriptors carry the access mode the
// engine opened them with.
func TestModuleDescriptorsReadOnly(t *testing.T) {
	r := newRig(t, 10)
	lines := r.isoSpawn("prober", "fd-rights")
	got := map[string]string{}
	for len(got) < 3 {
		l := r.stepUntilLine(lines, "FD ")
		f := strings.Fields(l)
		got[f[1]] = strings.Join(f[2:], " ")
	}
	require.Equal(t, "access=rdonly mmap-write=EACCES mmap-read=ok ftruncate=EINVAL", got["world"])
	require.Equal(t, "access=rdonly mmap-write=EACCES mmap-read=ok ftruncate=EINVAL", got["events"])
	require.Equal(t, "access=rdwr mmap-write=ok mmap-read=ok", got["module"])
	r.stepUntilLine(lines, "DONE")
	// The world is intact: the engine publishes on.
	for i := 0; i < 3; i++ {
		r.mustPublish()
	}
}

// TestModuleNeedsNoPath (finding 5, the descriptor design): every segment
// file of the instance is renamed away before a module starts, so that no
// segment exists under any name the module could derive; the module joins
// through the socket alone, ticks every frame on the engine's frames and
// its commands are applied.
func TestModuleNeedsNoPath(t *testing.T) {
	r := newRig(t, 10)
	prefix := shm.Prefix + r.inst + "."
	ents, err := os.ReadDir(shm.Dir)
	require.NoError(t, err)
	moved := 0
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && !strings.HasSuffix(e.Name(), ".sock") {
			from := filepath.Join(shm.Dir, e.Name())
			to := filepath.Join(shm.Dir, ".hidden."+strconv.Itoa(os.Getpid())+"."+e.Name())
			require.NoError(t, os.Rename(from, to))
			t.Cleanup(func() { _ = os.Remove(to) })
			moved++
		}
	}
	require.GreaterOrEqual(t, moved, 3, "world, leases and events renamed away")
	r.spawn("pathless", "create-once", module.Fast, 1, "HP", "")
	r.stepUntil("join", r.joined(1))
	r.stepUntil("5 runs", func() bool { return r.module("pathless").Stats.Runs >= 5 })
	for i := 0; i < 3; i++ {
		r.mustPublish()
	}
	m := r.module("pathless")
	require.Zero(t, m.Stats.Failures)
	require.Equal(t, uint64(2), m.Stats.Applied, "its create and set were applied")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && !strings.HasSuffix(e.Name(), ".sock") {
			_, err := os.Stat(filepath.Join(shm.Dir, e.Name()))
			require.True(t, os.IsNotExist(err), "%s stayed away", e.Name())
		}
	}
}

// TestIsolationForgedWordsCaught (finding 5, same uid): a module opens
// another module's segment by name and keeps forging its done frame and its
// pin, and reports an absurd wake latency for its own ticks. With the
// engine's uid this stays possible (docs/ARCHITECTURE.md, "Trust
// boundary"); what validation catches: the forged done frames are counted
// and never complete the victim's tick, its pin word is honoured only
// during its own ticks (publishing never stops), the latency is ignored and
// counted. Once the forger stops, the victim ticks every frame on time.
func TestIsolationForgedWordsCaught(t *testing.T) {
	r := newRig(t, 50)
	r.spawn("victim", "create-once", module.Fast, 1, "HP", "")
	r.stepUntil("victim joined", r.joined(1))
	victim := r.module("victim")
	lines := r.isoSpawnStdin("forger", "forge", "FDP_VICTIM="+layout.ModuleSegmentName(r.inst, victim.Slot))
	r.stepUntilLine(lines.out, "FORGING")
	for i := 0; i < 30 && r.module("victim").Stats.BadDone == 0; i++ {
		r.mustPublish()
	}
	require.NotZero(t, r.module("victim").Stats.BadDone, "forged done frames are counted")
	require.NotZero(t, r.eng.BadWakeReports, "an absurd wake latency is counted")
	require.Less(t, r.eng.WakeHist.Max(), host.MaxWakeReport, "and kept out of the statistics")
	_, err := lines.in.Write([]byte("stop\n"))
	require.NoError(t, err)
	r.stepUntilLine(lines.out, "STOPPED")
	before := r.module("victim").Stats
	for i := 0; i < 20; i++ {
		r.mustPublish()
	}
	after := r.module("victim").Stats
	require.GreaterOrEqual(t, after.Runs-before.Runs, uint64(19))
	require.Equal(t, before.Late, after.Late, "on time once the forger stopped")
	require.Zero(t, after.Failures)
	require.Equal(t, uint64(2), after.Applied, "its commands were applied once")
	require.Zero(t, r.eng.Publisher().Skipped, "publishing never stopped")
}

// isoLines is a child's stdout (lines) and stdin.
type isoLines struct {
	out <-chan string
	in  io.Writer
}

// isoSpawnStdin is isoSpawn with the child's stdin kept open.
func (r *rig) isoSpawnStdin(name, role string, env ...string) isoLines {
	out, in, _ := r.spawnChild("TestIsolationChild", isoEnv, role, name, env...)
	return isoLines{out: out, in: in}
}

// spawnChild starts this test binary as a module child: -test.run selects
// test (whose body runs the child when envKey is set), envKey=role picks
// its part, and it joins r's instance as name. Its stdout lines arrive on
// out; its stdin stays open until the test ends.
func (r *rig) spawnChild(test, envKey, role, name string, env ...string) (out <-chan string, in io.Writer, cmd *exec.Cmd) {
	cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envKey+"="+role, "FDP_MODULE="+name, "FDP_INSTANCE="+r.inst)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(r.t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(r.t, err)
	require.NoError(r.t, cmd.Start())
	r.cmds = append(r.cmds, cmd)
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, stdin, cmd
}
