package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/supervisor"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const crashModules = 2

// startEngine is the engine start-up path of the crash tests, the same as
// `engine run`: recover the world of a dead engine if there is one, remove
// stale segments, create fresh ones, resume after the recovered frame.
func startEngine(t testing.TB, inst string, log *slog.Logger) (*host.Engine, *soakSim, host.StartInfo, error) {
	s := newSoakSchema()
	w, info, err := host.PrepareStart(inst, func() (*world.World, error) {
		return world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 16})
	}, log)
	if err != nil {
		return nil, nil, info, err
	}
	var sim *soakSim
	if w != nil {
		sim = &soakSim{s: s, w: w, modules: crashModules, lastSeen: make([]uint64, crashModules)}
		sim.step.Store(info.Frame)
	} else {
		w, sim = newSoakWorld(t, s, crashModules)
	}
	eng, err := host.New(host.Config{Instance: inst, FrameRate: 500, Logger: log}, w, sim)
	if err != nil {
		return nil, nil, info, err
	}
	// Frame numbers never go backwards: resume after the highest frame a
	// previous engine published, recovered or not.
	if resume := max(info.Frame, info.ResumeFrame); resume > 0 {
		if err := eng.ResumeAfter(resume); err != nil {
			eng.Close()
			return nil, nil, info, err
		}
	}
	return eng, sim, info, nil
}

// runCrashEngine is the engine child process: it prints how it started and
// runs until killed (or SIGTERM).
func runCrashEngine(inst string, log *slog.Logger) int {
	eng, _, info, err := startEngine(nil, inst, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "engine:", err)
		return 1
	}
	defer eng.Close()
	fmt.Printf("engine-start pid=%d recovered=%v frame=%d\n", os.Getpid(), info.Recovered, info.Frame)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	_ = eng.Run(ctx, nil)
	return 0
}

// latestFrameOf reads the latest frame of the instance's current world
// segment (0 if none).
func latestFrameOf(inst string) uint64 {
	seg, err := shm.Open(shm.SegmentName(inst, fsync.WorldSegment), false)
	if err != nil {
		return 0
	}
	defer seg.Close()
	if _, err := layout.DecodeHeader(seg.Data); err != nil {
		return 0
	}
	f, _, _ := layout.UnpackLatest(layout.Load64(seg.Data, layout.OffWLatest))
	return f
}

func waitFor(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(time.Millisecond) // polling a condition, bounded
	}
}

type entityData struct {
	val    SoakVal
	chk    SoakChk
	ledger Ledger
	hasL   bool
}

// publishedData pins the latest frame of inst's (stale) world segment and
// copies every entity of the soak world out of it.
func publishedData(t testing.TB, inst string, s *soakSchema) (uint64, map[world.Entity]entityData) {
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "check", Registry: s.reg})
	require.NoError(t, err)
	defer r.Close()
	f, err := r.Pin()
	require.NoError(t, err)
	out := map[world.Entity]entityData{}
	for i := 0; i < soakData+crashModules*soakLedger; i++ {
		e := world.MakeEntity(uint32(i), 1)
		require.True(t, f.IsAlive(e))
		var d entityData
		d.val, _ = fsync.Get[SoakVal](f, e, s.val)
		d.chk, _ = fsync.Get[SoakChk](f, e, s.chk)
		d.ledger, d.hasL = fsync.Get[Ledger](f, e, s.ledger)
		out[e] = d
	}
	n := f.Number()
	require.NoError(t, f.Release())
	return n, out
}

// TestEngineKillRecovers: SIGKILL the engine child at a random moment while
// it publishes at 500 Hz with a module writing ledger batches; a new engine
// (here, in the test process, through the start-up path of `engine run`)
// recovers exactly what the dead engine had last published, resumes after
// that frame, and the module (the same process) rejoins and reads valid frames.
func TestEngineKillRecovers(t *testing.T) {
	maybeChild()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	inst := uniqueInstance(t, "c")
	eng := exec.Command(os.Args[0], "-test.run=^TestEngineKillRecovers$")
	eng.Env = append(os.Environ(), "FDP_TEST_CHILD=engine", "FDP_INSTANCE="+inst)
	eng.Stderr = os.Stderr
	require.NoError(t, eng.Start())
	t.Cleanup(func() { _ = eng.Process.Kill(); _ = eng.Wait() })
	out := &countWriter{}
	mod := startSoakModule(t, "TestEngineKillRecovers", "soakmod", inst, 0, soakSpec{"fast-a", module.Fast, 1}, out)
	t.Cleanup(func() { _ = mod.Process.Kill(); _ = mod.Wait() })
	waitFor(t, "frames and module ticks", 30*time.Second, func() bool {
		c, _ := out.result()
		return latestFrameOf(inst) >= 50 && c >= 20
	})
	time.Sleep(time.Duration(rng.Int63n(int64(20 * time.Millisecond)))) // a random moment
	require.NoError(t, syscall.Kill(eng.Process.Pid, syscall.SIGKILL))
	_ = eng.Wait()
	// The module sees the engine go and waits for the next one.

	s := newSoakSchema()
	frame, want := publishedData(t, inst, s)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, sim, info, err := startEngine(t, inst, log)
	require.NoError(t, err)
	defer e.Close()
	require.True(t, info.Recovered, "%v", info.Reason)
	require.Equal(t, frame, info.Frame, "recovered frame = the dead engine's latest")
	w := e.World()
	require.Equal(t, len(want), w.Count())
	for ent, d := range want {
		v, _ := world.Get[SoakVal](w, ent, s.val)
		c, _ := world.Get[SoakChk](w, ent, s.chk)
		l, hasL := world.Get[Ledger](w, ent, s.ledger)
		require.Equal(t, d, entityData{val: v, chk: c, ledger: l, hasL: hasL}, "entity %v", ent)
	}
	// Resumes after the frame; the same module process rejoins and reads
	// valid frames.
	before, _ := out.result()
	deadline := time.Now().Add(30 * time.Second)
	for {
		e.Step()
		if c, _ := out.result(); c >= before+10 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the module did not rejoin")
	}
	require.Greater(t, e.Publisher().Frame(), frame)
	require.Equal(t, e.Publisher().Frame(), sim.step.Load(), "frame numbers continue from the recovered one")
	require.Zero(t, sim.partial.Load())
	_, torn := out.result()
	require.Empty(t, torn)
	_ = mod.Process.Kill()
	_ = mod.Wait()
	require.NoError(t, e.Close())
	requireNoSegments(t, inst)
}

// runTree is a whole FDP tree in one process: a supervisor running the
// engine child and soak modules (children get PDEATHSIG).
func runTree(inst string) int {
	quiet := map[string]string{"FDP_TEST_CHILD": "soakmod", "FDP_QUIET": "1"}
	cfg := &supervisor.Config{
		Instance: inst,
		Engine: supervisor.EngineConfig{Command: []string{os.Args[0], "-test.run=^TestTreeKill$"},
			Env: map[string]string{"FDP_TEST_CHILD": "engine"}, Restart: true},
		Restart:  supervisor.RestartConfig{InitialBackoff: supervisor.Duration(10 * time.Millisecond), MaxBackoff: supervisor.Duration(100 * time.Millisecond), Multiplier: 2, ResetAfter: supervisor.Duration(time.Second)},
		Breaker:  supervisor.BreakerConfig{MaxFailures: 50, Window: supervisor.Duration(time.Minute)},
		Shutdown: supervisor.ShutdownConfig{Grace: supervisor.Duration(time.Second)},
	}
	for k := 0; k < crashModules; k++ {
		env := map[string]string{"FDP_SOAK_K": strconv.Itoa(k)}
		for a, b := range quiet {
			env[a] = b
		}
		cfg.Modules = append(cfg.Modules, supervisor.ModuleConfig{Name: fmt.Sprintf("m%d", k), Command: []string{os.Args[0], "-test.run=^TestTreeKill$"},
			Env: env, Tier: supervisor.TierFast, Every: 1})
	}
	sup, err := supervisor.New(cfg, supervisor.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Hooks: supervisor.Hooks{
			OnStart: func(name string, pid int) { fmt.Printf("start %s %d\n", name, pid) },
			Reclaim: func(name string, pid int) error {
				seg, err := shm.Open(shm.SegmentName(inst, fsync.LeasesSegment), true)
				if err != nil {
					return nil
				}
				defer seg.Close()
				if ll, err := layout.DecodeLeases(seg.Data); err == nil {
					fsync.ReleaseReadersOf(seg.Data, ll, pid)
				}
				return nil
			},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tree:", err)
		return 1
	}
	if err := sup.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "tree:", err)
		return 1
	}
	return 0
}

// doneFrames returns the done frame of every module segment of inst.
func doneFrames(inst string) map[string]uint64 {
	out := map[string]uint64{}
	for n := 0; n < crashModules+2; n++ {
		seg, err := shm.Open(layout.ModuleSegmentName(inst, n), false)
		if err != nil {
			continue
		}
		if lm, err := layout.DecodeModule(seg.Data); err == nil {
			out[lm.Info.Name] = layout.Load64(seg.Data, layout.OffMDoneFrame) &^ host.DoneFailed
		}
		seg.Close()
	}
	return out
}

// TestTreeKill: a supervisor child runs the engine and two modules. (1)
// SIGKILL the engine: the supervisor restarts it, it recovers the last
// complete frame and resumes after it; the modules see the engine go, rejoin
// the new engine in the same processes and tick again. (2) SIGKILL the supervisor:
// PDEATHSIG takes every child down; a clean start of the instance finds
// only stale segments, removes them, and after it nothing is left.
func TestTreeKill(t *testing.T) {
	maybeChild()
	inst := uniqueInstance(t, "k")
	tree := exec.Command(os.Args[0], "-test.run=^TestTreeKill$")
	tree.Env = append(os.Environ(), "FDP_TEST_CHILD=tree", "FDP_INSTANCE="+inst)
	tree.Stderr = os.Stderr
	pipe, err := tree.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, tree.Start())
	t.Cleanup(func() { _ = tree.Process.Kill(); _ = tree.Wait() })
	starts := make(chan [2]string, 256)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "start" {
				starts <- [2]string{f[1], f[2]}
			}
		}
		close(starts)
	}()
	pids := map[string][]int{}
	drain := func() {
		for {
			select {
			case s, ok := <-starts:
				if !ok {
					return
				}
				pid, _ := strconv.Atoi(s[1])
				pids[s[0]] = append(pids[s[0]], pid)
			default:
				return
			}
		}
	}
	allTicked := func(after uint64) func() bool {
		return func() bool {
			d := doneFrames(inst)
			for k := 0; k < crashModules; k++ {
				if d[fmt.Sprintf("m%d", k)] <= after {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, "engine frames and module ticks", 30*time.Second, allTicked(20))
	drain()
	require.Len(t, pids["engine"], 1)

	// (1) Engine killed: restarted, recovered, modules back.
	before := latestFrameOf(inst)
	require.NoError(t, syscall.Kill(pids["engine"][0], syscall.SIGKILL))
	waitFor(t, "engine restart", 30*time.Second, func() bool { drain(); return len(pids["engine"]) == 2 })
	waitFor(t, "new engine publishing", 30*time.Second, func() bool { return latestFrameOf(inst) > before })
	resumed := latestFrameOf(inst)
	require.Greater(t, resumed, before, "frame numbers never go backwards across the engine restart")
	waitFor(t, "modules ticking on the new engine", 30*time.Second, allTicked(resumed))
	drain()
	for k := 0; k < crashModules; k++ {
		require.Len(t, pids[fmt.Sprintf("m%d", k)], 1, "module m%d survives the engine's death in its process", k)
	}

	// (2) The whole tree killed.
	require.NoError(t, syscall.Kill(tree.Process.Pid, syscall.SIGKILL))
	_ = tree.Wait()
	drain()
	waitFor(t, "every child gone (PDEATHSIG)", 30*time.Second, func() bool {
		for _, ps := range pids {
			for _, pid := range ps {
				if st, err := shm.ProcStartTime(pid); err == nil && shm.ProcessAlive(uint32(pid), st) {
					return false
				}
			}
		}
		return true
	})
	// The kernel may release a dead creator's flock (held through its
	// mappings) a moment after the process is gone (deferred fput), so wait
	// for every segment of the instance to read as stale.
	n := 0
	waitFor(t, "the killed tree's segments reported stale", 30*time.Second, func() bool {
		infos, err := shm.List()
		require.NoError(t, err)
		n = 0
		for _, in := range infos {
			if in.Instance == inst {
				if in.State != shm.StateStale {
					return false
				}
				n++
			}
		}
		return true
	})
	require.GreaterOrEqual(t, n, 3, "the killed tree left its segments")
	eng, _, info, err := startEngine(t, inst, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(info.Removed), n)
	eng.Step()
	require.NoError(t, eng.Close())
	requireNoSegments(t, inst)
}
