package tests

// Issue 15, time control in a replay (`engine replay` and `engine ctl`, real
// processes): pause holds the frame number and ticks nothing; step 5 runs
// exactly 5 frames; seek lands on the frame asked (its live checksum), back
// and forth; speed 0.5 halves the publication rate; --loop starts again.

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/record"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// demoRecording runs the demo world in process for frames frames at rate
// 60 (stepped by hand: no waiting) and records every frame with package
// record (keyframes every keyEvery), returning the file and the content
// checksum of every frame as published live.
func demoRecording(t testing.TB, entities, frames, keyEvery int) (string, map[uint64]uint64) {
	path, sums, _ := demoRecordingDirty(t, entities, frames, keyEvery, 0)
	return path, sums
}

// partialMover is the demo's simulation with only a share of the chunks'
// positions written each frame (dirty: 0.3 is 30% of the world), the
// others untouched, plus the demo's churn.
type partialMover struct {
	sim   *demo.Sim
	dirty float64
	frame int
}

func (p *partialMover) Step(dt float32) {
	p.frame++
	w, s := p.sim.W, p.sim.S
	n := w.NumChunks()
	q := w.Query(world.MaskOf(s.Pos))
	for q.Next() {
		// Chunks (c + frame) mod n below dirty × n: a rotating window.
		if float64((q.Chunk()+p.frame)%n) >= p.dirty*float64(n) {
			continue
		}
		pos := world.ColumnMut[demo.Position](&q, s.Pos)
		for i := range pos {
			pos[i].X += dt
		}
	}
}

// demoRecordingDirty is demoRecording with, when dirty > 0, only that share
// of the positions written each frame (partialMover) and no churn. live is
// the time the live engine's frames took (Engine.Step: simulation, publish;
// the recording is this function's, outside them).
func demoRecordingDirty(t testing.TB, entities, frames, keyEvery int, dirty float64) (path string, sums map[uint64]uint64, live time.Duration) {
	t.Helper()
	s, err := demo.NewSchema()
	require.NoError(t, err)
	cfg := demo.DefaultConfig()
	cfg.Entities, cfg.ChurnPerSec = entities, 600
	sim, err := demo.NewSim(s, cfg)
	require.NoError(t, err)
	var step host.Simulation = sim
	if dirty > 0 {
		step = &partialMover{sim: sim, dirty: dirty}
	}
	inst := uniqueInstance(t, "rs")
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 60, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sim.W, step)
	require.NoError(t, err)
	defer eng.Close()
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "recorder"})
	require.NoError(t, err)
	defer r.Close()
	ef, err := testutil.FollowEvents(inst)
	require.NoError(t, err)
	defer ef.Close()
	h, err := record.NewHeader(r.Layout(), time.Now().UnixNano(), uint64(eng.Period()), uint32(keyEvery))
	require.NoError(t, err)
	path = filepath.Join(t.TempDir(), "demo.fdpr")
	wr, err := record.Create(path, h, record.WriterOptions{QueueFrames: 1 << 14, QueueBytes: 1 << 32})
	require.NoError(t, err)
	capt := record.NewCapturer(r.Layout(), keyEvery)
	sums = map[uint64]uint64{}
	for i := 0; i < frames; i++ {
		start := time.Now()
		st := eng.Step()
		live += time.Since(start)
		require.NoError(t, st.PublishErr)
		var evs []record.Event
		require.NoError(t, ef.Read(func(_, fr uint64, typ uint16, p []byte) {
			evs = append(evs, record.Event{Type: typ, Frame: fr, Payload: append([]byte(nil), p...)})
		}))
		f, err := r.Pin()
		require.NoError(t, err)
		require.Equal(t, st.Frame, f.Number())
		_, sums[f.Number()] = testutil.FrameChecksum(r.Layout(), f.Slot())
		raw, info, err := capt.Capture(nil, f.Slot(), evs, nil)
		require.NoError(t, err)
		require.NoError(t, f.Release())
		for !wr.TryEnqueue(info.Kind, f.Number(), raw) {
			// The queue is bounded: a test that must record every frame
			// waits for the writer (it never drops here).
			require.NoError(t, wr.Err())
			time.Sleep(time.Millisecond)
		}
	}
	require.NoError(t, wr.Close())
	return path, sums, live
}

// replayChecksum is the checksum of the latest frame of inst, read by a
// fresh reader (a seek back replaces the instance's segments).
func replayChecksum(t *testing.T, inst string) (uint64, uint64) {
	t.Helper()
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "checker"})
	require.NoError(t, err)
	defer r.Close()
	f, sum, err := testutil.PinnedChecksum(r.Layout(), r.Pin)
	require.NoError(t, err)
	return f, sum
}

func TestReplayTimeControl(t *testing.T) {
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	path, sums := demoRecording(t, 2000, 300, 25)
	inst := uniqueInstance(t, "rc")
	rp := exec.Command(filepath.Join(bin, "engine"), "replay", path, "--instance", inst, "--paused", "--status", "0")
	rp.Env = append(os.Environ(), "FDP_SHM_DIR="+dir)
	var out strings.Builder
	rp.Stdout, rp.Stderr = &out, os.Stderr
	require.NoError(t, rp.Start())
	t.Cleanup(func() { _ = rp.Process.Kill(); _ = rp.Wait() })
	waitFor(t, "the replay's first frame", 20*time.Second, func() bool { return latestFrameOf(inst) == 1 })
	require.Contains(t, ctl(t, bin, dir, inst, "status"), "paused")

	w, wl := startWitness(t, inst, dir)
	defer w.Kill()
	waitFor(t, "the witness attached", 20*time.Second, func() bool { return moduleSegments(inst) > 0 })

	// Paused: the frame number holds and nothing ticks.
	time.Sleep(300 * time.Millisecond) // an observation window: nothing may happen in it
	require.Equal(t, uint64(1), latestFrameOf(inst), "paused: no frame published")
	wl.mu.Lock()
	require.Empty(t, wl.ticks, "paused: no tick")
	wl.mu.Unlock()

	// step 5: exactly five frames, then paused again.
	ctl(t, bin, dir, inst, "step", "5")
	require.Equal(t, uint64(6), latestFrameOf(inst))
	time.Sleep(200 * time.Millisecond) // observation window
	require.Equal(t, uint64(6), latestFrameOf(inst), "paused again after the steps")
	f, sum := replayChecksum(t, inst)
	require.Equal(t, uint64(6), f)
	require.Equal(t, sums[6], sum)

	// seek forward, then back (a new engine): the frame asked, whole.
	for _, target := range []uint64{200, 37, 250, 2} {
		// ctl seek waits until the frame asked is published (through the
		// gap of a seek back) and prints the state after it.
		out := ctl(t, bin, dir, inst, "seek", strconv.FormatUint(target, 10))
		require.Contains(t, out, fmt.Sprintf("paused at frame %d,", target), "seek %d", target)
		require.Equal(t, target, latestFrameOf(inst), "published when ctl seek returns")
		f, sum := replayChecksum(t, inst)
		require.Equal(t, target, f)
		require.Equal(t, sums[target], sum, "frame %d after a seek", target)
	}
	// After the seek back the witness rejoins the new engine and ticks on
	// the frames that follow.
	waitFor(t, "the witness rejoined", 20*time.Second, func() bool { return moduleSegments(inst) > 0 })
	ctl(t, bin, dir, inst, "step", "3")
	require.Equal(t, uint64(5), latestFrameOf(inst))
	waitFor(t, "a witness tick after the seek back", 20*time.Second, func() bool {
		wl.mu.Lock()
		defer wl.mu.Unlock()
		return len(wl.ticks) > 0 && wl.ticks[len(wl.ticks)-1] <= 5
	})

	// speed 0.5: half the recorded rate (60 fps): over a window, at most
	// half the frames (the engine may run slower under load, never faster).
	ctl(t, bin, dir, inst, "speed", "0.5")
	ctl(t, bin, dir, inst, "resume")
	f1, t1 := latestFrameOf(inst), time.Now()
	time.Sleep(2 * time.Second) // the measurement window
	f2, t2 := latestFrameOf(inst), time.Now()
	rate := float64(f2-f1) / t2.Sub(t1).Seconds()
	require.Positive(t, f2-f1, "running")
	require.LessOrEqual(t, rate, 30*1.15, "speed 0.5: %.1f fps, the recording's rate is 60", rate)
	require.Contains(t, ctl(t, bin, dir, inst, "status"), "0.5")

	require.NoError(t, rp.Process.Signal(syscall.SIGTERM))
	require.NoError(t, rp.Wait())
	require.Contains(t, out.String(), "replay of ")
}

// TestReplayLoop: --from starts at the frame asked; --loop starts again at
// the first frame after the last.
func TestReplayLoop(t *testing.T) {
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	path, sums := demoRecording(t, 500, 40, 10)
	inst := uniqueInstance(t, "rp")
	rp := exec.Command(filepath.Join(bin, "engine"), "replay", path, "--instance", inst, "--from", "23", "--paused", "--loop", "--speed", "4", "--status", "0")
	rp.Env = append(os.Environ(), "FDP_SHM_DIR="+dir)
	require.NoError(t, rp.Start())
	t.Cleanup(func() { _ = rp.Process.Kill(); _ = rp.Wait() })
	waitFor(t, "the frame --from asked", 20*time.Second, func() bool { return latestFrameOf(inst) == 23 })
	f, sum := replayChecksum(t, inst)
	require.Equal(t, uint64(23), f)
	require.Equal(t, sums[23], sum)
	ctl(t, bin, dir, inst, "resume")
	var high uint64
	waitFor(t, "a frame number going back (the loop)", 30*time.Second, func() bool {
		f := latestFrameOf(inst)
		if f > high {
			high = f
		}
		return high >= 30 && f > 0 && f < 10
	})
	require.NoError(t, rp.Process.Signal(syscall.SIGTERM))
	require.NoError(t, rp.Wait())
}

// moduleSegments counts the module segments of inst.
func moduleSegments(inst string) int {
	n := 0
	infos, _ := shm.List()
	for _, in := range infos {
		if in.Instance == inst && strings.HasPrefix(in.Kind, "mod.") && in.State == shm.StateLive {
			n++
		}
	}
	return n
}

// TestReplayBadInput: what `engine replay` cannot replay is one line and
// exit status 1.
func TestReplayBadInput(t *testing.T) {
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	junk := filepath.Join(t.TempDir(), "junk.fdpr")
	require.NoError(t, os.WriteFile(junk, []byte("not a recording at all, just text\n"), 0o600))
	path, _ := demoRecording(t, 200, 5, 5)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", filepath.Join(dir, "nosuch.fdpr")}, "no such file"},
		{[]string{"replay", junk}, "junk.fdpr"},
		{[]string{"replay", path, "--speed", "0"}, "--speed 0: must be 0.001..64"},
		{[]string{"replay", path, "--from", "99"}, "--from 99"},
		{[]string{"replay"}, "accepts 1 arg"},
	} {
		cmd := exec.Command(filepath.Join(bin, "engine"), append(c.args, "--instance", uniqueInstance(t, "rx"))...)
		cmd.Env = append(os.Environ(), "FDP_SHM_DIR="+dir)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%v: %s", c.args, out)
		require.Equal(t, 1, ee.ExitCode(), "%v: %s", c.args, out)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Contains(t, lines[len(lines)-1], c.want, "%v", c.args)
		require.NotContains(t, string(out), "goroutine", "%v: no Go trace", c.args)
	}
}
