package tests

// Issue 15, replay: a recording of a live demo run under `engine up` (with
// module SIGKILLs) replayed by `engine replay` into shared memory: every
// replayed frame has the content checksum of the live frame with its
// number (testutil.FrameChecksum, computed by this test's own reader on
// both sides), and an unmodified module attached to the replay sees the
// frame numbers and events it saw live; its commands are validated,
// counted and dropped.
//
// The recording is the engine's own (`record:` in the supervisor config,
// `engine run --record`); this test's reader computes the checksum of every
// frame it sees, live and replayed, and compares the frames seen in both.
//
// FDP_REPLAY_DURATION sets the live run's length (default 6s; `make soak`
// runs 60s).

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash/crc64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/module"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const (
	replayChildEnv = "FDP_REPLAY_ROLE"
	// witnessEvent is the witness module's own event (payload: the frame
	// its view showed): in the live run it is played back and recorded; in
	// the replay, published again, it must be dropped (else the replay's
	// log would hold it twice).
	witnessEvent = 0x0300
)

// witness is a fast module that prints every tick's frame and every event
// it is given, publishes an event and destroys a made-up entity (a command
// rejected as stale) in every tick.
type witness struct{ s *demo.Schema }

func (w witness) Spec() module.Spec {
	return module.Spec{Name: "witness", Tier: module.Fast, Every: 1, Reads: world.MaskOf(w.s.Health)}
}

func (w witness) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "TICK %d\n", v.Frame())
	if _, err := v.Events(func(_, frame uint64, typ uint16, p []byte) {
		fmt.Fprintf(&b, "EV %d %d %s\n", frame, typ, hex.EncodeToString(p))
	}); err != nil {
		return err
	}
	fmt.Print(b.String())
	c.Publish(witnessEvent, strconv.AppendUint(nil, v.Frame(), 10))
	c.Destroy(world.MakeEntity(1<<20, 7)) // never issued: rejected as stale_entity
	// A write the replay must drop: the first entity's health changes
	// (applied, the replayed world would no longer be the recorded one).
	q := v.Query(world.MaskOf(w.s.Health))
	for q.Next() {
		hs := module.Column[demo.Health](v, &q, w.s.Health)
		for i := range hs {
			if q.Match(i) {
				module.Set(c, q.Entity(i), w.s.Health, demo.Health{HP: hs[i].HP - 7, Max: hs[i].Max})
				return nil
			}
		}
	}
	return nil
}

func replayChild(role string) int {
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := module.Run(context.Background(), witness{s: s}, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.Reg}); err != nil {
		fmt.Fprintln(os.Stderr, "witness:", err)
		return 1
	}
	return 0
}

// witnessLog is what a witness printed: its tick frames in order, and the
// events it was given by frame.
type witnessLog struct {
	mu     sync.Mutex
	ticks  []uint64
	events map[uint64][]string
}

func (w *witnessLog) line(l string) {
	f := strings.Fields(l)
	if len(f) < 2 {
		return
	}
	n, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch f[0] {
	case "TICK":
		w.ticks = append(w.ticks, n)
	case "EV":
		if w.events == nil {
			w.events = map[uint64][]string{}
		}
		w.events[n] = append(w.events[n], strings.Join(f[2:], " "))
	}
}

func startWitness(t *testing.T, inst, dir string) (*testutil.Child, *witnessLog) {
	wl := &witnessLog{}
	c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestReplayRoundTrip", Drop: true, OnLine: wl.line,
		Env: []string{replayChildEnv + "=witness", "FDP_INSTANCE=" + inst, "FDP_SHM_DIR=" + dir}})
	return c, wl
}

// liveChecksums is this test's reader of a live instance: the content
// checksum of every frame it sees (it pins the latest frame in a loop), until
// stop is closed.
// It runs on its own goroutine: it makes no assertion (r is attached by the
// test's goroutine).
func liveChecksums(r *fsync.Reader, stop <-chan struct{}) map[uint64]uint64 {
	defer r.Close()
	sums := map[uint64]uint64{}
	var last uint64
	for {
		select {
		case <-stop:
			return sums
		default:
		}
		f, sum, err := testutil.PinnedChecksum(r.Layout(), r.Pin)
		if err != nil || f == last {
			time.Sleep(200 * time.Microsecond) // polling for the next frame
			continue
		}
		sums[f], last = sum, f
	}
}

func replayDuration() time.Duration {
	if v, err := time.ParseDuration(os.Getenv("FDP_REPLAY_DURATION")); err == nil && v > 0 {
		return v
	}
	return 6 * time.Second
}

func TestReplayRoundTrip(t *testing.T) {
	testutil.RunChild(replayChildEnv, replayChild)
	bin := shippedBinaries(t)
	dir := t.TempDir()
	testutil.UseShmDir(t, dir)
	inst := uniqueInstance(t, "rl")
	path := filepath.Join(t.TempDir(), "demo.fdpr")
	cfg := filepath.Join(t.TempDir(), "live.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`instance: `+inst+`
engine: {command: [engine, run, --entities, "3000", --churn, "300", --status, "0"]}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
  - {name: ai-1, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: ai-2, command: [modrunner, ai], tier: slow, every: 6, group: ai}
restart: {initial_backoff: 50ms, max_backoff: 1s, multiplier: 2, reset_after: 2s}
shutdown: {grace: 5s}
record: {file: `+path+`, keyframe_every: 30}
`), 0o600))
	up := exec.Command(filepath.Join(bin, "engine"), "up", "--config", cfg)
	up.Env = append(os.Environ(), "FDP_SHM_DIR="+dir)
	require.NoError(t, up.Start())
	t.Cleanup(func() { _ = up.Process.Kill(); _ = up.Wait() })
	waitFor(t, "the live engine's first frame", 20*time.Second, func() bool { return latestFrameOf(inst) > 0 })

	// Recording, while a witness module runs and ai-1 is SIGKILLed.
	stop := make(chan struct{})
	done := make(chan map[uint64]uint64)
	lr, err := fsync.Attach(inst, fsync.AttachOptions{Name: "checker"})
	require.NoError(t, err)
	go func() { done <- liveChecksums(lr, stop) }()
	liveW, liveLog := startWitness(t, inst, dir)
	dur := replayDuration()
	kills := 0
	for end := time.Now().Add(dur); time.Now().Before(end); {
		time.Sleep(dur / 3) // the period between kills, not a synchronisation
		var pid int
		waitFor(t, "ai-1 running", 10*time.Second, func() bool { pid = childOf(up.Process.Pid, "ai-1"); return pid > 0 })
		require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
		kills++
	}
	close(stop)
	liveSums := <-done
	liveW.Kill()
	require.NoError(t, up.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.Wait())
	require.Positive(t, kills)
	rf, err := host.OpenRecording(path)
	require.NoError(t, err)
	require.NoError(t, rf.Reader().Damage())
	var frames []uint64
	for _, e := range rf.Reader().Index() {
		frames = append(frames, e.Frame)
	}
	rf.Close()
	require.Greater(t, len(frames), int(dur.Seconds()*20), "recorded frames")
	fileSum := fileDigest(t, path)

	// Replay, paused until the witness is attached.
	rinst := uniqueInstance(t, "rr")
	var out strings.Builder
	rp := exec.Command(filepath.Join(bin, "engine"), "replay", path, "--instance", rinst, "--paused", "--status", "0")
	rp.Env = append(os.Environ(), "FDP_SHM_DIR="+dir)
	rp.Stdout, rp.Stderr = &out, os.Stderr
	require.NoError(t, rp.Start())
	t.Cleanup(func() { _ = rp.Process.Kill() })
	waitFor(t, "the replay's first frame", 20*time.Second, func() bool { return latestFrameOf(rinst) == frames[0] })
	repW, repLog := startWitness(t, rinst, dir)
	waitFor(t, "the witness attached to the replay", 20*time.Second, func() bool { return moduleSegments(rinst) > 0 })
	// This test's reader of the replay: the checksum of every frame it sees.
	r, err := fsync.Attach(rinst, fsync.AttachOptions{Name: "checker"})
	require.NoError(t, err)
	defer r.Close()
	ctl(t, bin, dir, rinst, "resume")
	exited := make(chan error, 1)
	go func() { exited <- rp.Wait() }()
	recorded := map[uint64]bool{}
	for _, f := range frames {
		recorded[f] = true
	}
	compared, last := 0, uint64(0)
	for running := true; running; {
		select {
		case err := <-exited:
			require.NoError(t, err, "replay: %s", out.String())
			running = false
		default:
		}
		f, sum, err := testutil.PinnedChecksum(r.Layout(), r.Pin)
		if err != nil || f == last {
			time.Sleep(200 * time.Microsecond) // polling for the next frame
			continue
		}
		require.True(t, recorded[f], "the replay published frame %d, which was not recorded", f)
		if want, ok := liveSums[f]; ok {
			require.Equal(t, want, sum, "frame %d: the replayed frame's checksum is not the live frame's", f)
			compared++
		}
		last = f
	}
	require.Greater(t, compared, len(frames)/5, "replayed frames compared with their live checksums (seen by this test's reader in both runs)")
	repW.Kill()
	require.Equal(t, fileSum, fileDigest(t, path), "the replay never changes the recording")

	// The witness: frame numbers and events.
	liveLog.mu.Lock()
	defer liveLog.mu.Unlock()
	repLog.mu.Lock()
	defer repLog.mu.Unlock()
	require.Greater(t, len(repLog.ticks), len(frames)/3, "witness ticks in the replay")
	for i, f := range repLog.ticks {
		require.True(t, recorded[f], "the replay's witness ticked at frame %d, which was not recorded", f)
		require.True(t, i == 0 || f > repLog.ticks[i-1], "frame numbers go forward in the replay")
	}
	// Events of the frames both witnesses were given in full: after the
	// first tick of each (which gets what was in the log at its admission).
	lo := max(liveLog.ticks[0], repLog.ticks[0]) + 1
	hi := min(liveLog.ticks[len(liveLog.ticks)-1], repLog.ticks[len(repLog.ticks)-1])
	require.Greater(t, hi, lo+uint64(dur.Seconds()*10), "frames both witnesses saw")
	withEvents := 0
	for f := range liveLog.events {
		if f >= lo && f <= hi {
			withEvents++
		}
	}
	sawOwn := false
	for f := lo; f <= hi; f++ {
		require.Equal(t, liveLog.events[f], repLog.events[f], "events of frame %d, live and replayed", f)
		for _, e := range liveLog.events[f] {
			sawOwn = sawOwn || strings.HasPrefix(e, strconv.Itoa(witnessEvent)+" ")
		}
	}
	require.True(t, sawOwn, "the witness's own events were recorded and replayed (once)")
	require.Positive(t, withEvents, "frames with events")

	// Commands in the replay: validated, counted, dropped.
	sum := out.String()
	m := regexpReplaySummary.FindStringSubmatch(sum)
	require.NotNil(t, m, "replay summary: %s", sum)
	dropped, _ := strconv.Atoi(m[1])
	rejected, _ := strconv.Atoi(m[2])
	require.Positive(t, dropped, "the witness's events, validated and dropped")
	require.Positive(t, rejected, "the witness's stale destroys, rejected")
}

// fileDigest is the CRC-64 of a file's bytes.
func fileDigest(t *testing.T, path string) uint64 {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return crc64.Checksum(b, crc64.MakeTable(crc64.ECMA))
}

// ctl runs `engine ctl INSTANCE args...` and returns its output.
func ctl(t *testing.T, bin, dir, inst string, args ...string) string {
	t.Helper()
	c := exec.Command(filepath.Join(bin, "engine"), append([]string{"ctl", inst}, args...)...)
	c.Env = append(os.Environ(), "FDP_SHM_DIR="+dir)
	b, err := c.CombinedOutput()
	require.NoError(t, err, "engine ctl %s %v: %s", inst, args, b)
	return string(b)
}

// regexpReplaySummary reads the replay's summary line.
var regexpReplaySummary = regexp.MustCompile(`commands validated and dropped (\d+), rejected (\d+)`)
