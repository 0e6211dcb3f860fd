package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/audit"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/stretchr/testify/require"
)

// The chaos test is black-box: it builds the shipped binaries, runs them
// under `engine up` with a config file, SIGKILLs the engine and modules at
// random for the whole run, and checks every frame that an observer reads
// with the frame auditor, using only what a user has (the binaries, the
// segments and their documented layout, the supervisor's log).
//
// FDP_CHAOS_DURATION sets the run's length (default 20s; `make soak` runs
// minutes).

// buildBinaries builds bin/engine and bin/modrunner into a temporary
// directory once per test binary.
var buildOnce struct {
	sync.Once
	dir string
	err error
}

func shippedBinaries(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fdp-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/engine", "./cmd/modrunner")
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
		buildOnce.dir = dir
	})
	require.NoError(t, buildOnce.err)
	return buildOnce.dir
}

// observation is what the observer saw, read-only, of the instance's world
// segments.
type observation struct {
	mu sync.Mutex
	// Frames audited (distinct latest frames), torn reads retried, and the
	// inconsistent ones with their first problems.
	audited, torn int
	inconsistent  []string
	// Frame numbers must never go backwards, across engines too.
	lastFrame   uint64
	regressions []string
	// Engines seen (creator pids of world segments that published), in
	// order, with the time each one's first frame was read.
	engines   []uint32
	firstSeen map[uint32]time.Time
	lastPub   map[uint32]uint64 // last frame read from each engine
}

func (o *observation) latestEngine() (pid uint32, frames uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.engines) == 0 {
		return 0, 0
	}
	pid = o.engines[len(o.engines)-1]
	return pid, o.lastPub[pid]
}

// observe follows the instance's world segment across engine restarts and
// audits every new latest frame, until ctx ends.
func observe(ctx context.Context, inst string, o *observation) {
	name := shm.SegmentName(inst, fsync.WorldSegment)
	var seg *shm.Segment
	var lw *layout.World
	var pid uint32
	defer func() {
		if seg != nil {
			seg.Close()
		}
	}()
	for ctx.Err() == nil {
		if seg != nil && !seg.Current() {
			seg.Close()
			seg, lw = nil, nil
		}
		if seg == nil {
			s, err := shm.Open(name, false)
			if err != nil {
				time.Sleep(200 * time.Microsecond) // polling for the next engine's segment
				continue
			}
			l, err := layout.DecodeWorld(s.Data)
			if err != nil { // initialising: not ready yet
				s.Close()
				time.Sleep(200 * time.Microsecond)
				continue
			}
			seg, lw, pid = s, l, l.Header.CreatorPID
		}
		frame, torn, problems := auditLatest(seg.Data, lw)
		switch {
		case frame == 0: // nothing published yet by this engine
		case torn:
			o.mu.Lock()
			o.torn++
			o.mu.Unlock()
		default:
			o.mu.Lock()
			if _, ok := o.firstSeen[pid]; !ok {
				o.firstSeen[pid] = time.Now()
				o.engines = append(o.engines, pid)
			}
			if frame != o.lastFrame {
				if frame < o.lastFrame {
					o.regressions = append(o.regressions, fmt.Sprintf("frame %d (engine %d) after frame %d", frame, pid, o.lastFrame))
				}
				o.audited++
				if len(problems) > 0 && len(o.inconsistent) < 20 {
					o.inconsistent = append(o.inconsistent, fmt.Sprintf("engine %d frame %d: %s", pid, frame, strings.Join(problems, "; ")))
				}
				if frame > o.lastFrame {
					o.lastFrame = frame
				}
				o.lastPub[pid] = max(o.lastPub[pid], frame)
			}
			o.mu.Unlock()
		}
		time.Sleep(300 * time.Microsecond) // sampling period of the observer
	}
}

// supLog follows `engine up`'s output: children started and recovery
// verdicts of the engines.
type supLog struct {
	mu                   sync.Mutex
	started              map[string][]int // child -> pids in start order
	recovered, clean     int
	hungKills, errorsLog []string
	tail                 []string
}

var (
	reChildStarted = regexp.MustCompile(`msg="child started" child=(\S+) pid=(\d+)`)
	reHung         = regexp.MustCompile(`msg="child hung`)
)

func (l *supLog) follow(r io.Reader, echo io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if echo != nil {
			fmt.Fprintln(echo, line)
		}
		l.mu.Lock()
		if m := reChildStarted.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[2])
			l.started[m[1]] = append(l.started[m[1]], pid)
		}
		switch {
		case strings.Contains(line, "recovered the world"):
			l.recovered++
		case strings.Contains(line, "starting clean"):
			l.clean++
		case reHung.MatchString(line):
			l.hungKills = append(l.hungKills, line)
		case strings.Contains(line, "level=ERROR"):
			l.errorsLog = append(l.errorsLog, line)
		}
		l.tail = append(l.tail, line)
		if len(l.tail) > 60 {
			l.tail = l.tail[1:]
		}
		l.mu.Unlock()
	}
}

func (l *supLog) pids(child string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.started[child]...)
}

func chaosDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("FDP_CHAOS_DURATION")); err == nil && d > 0 {
		return d
	}
	return 20 * time.Second
}

// TestChaosEngineAndModuleKills: `engine up` with the demo modules; the
// driver SIGKILLs the engine (each time after the new engine has published,
// so that it has something to recover, plus now and then while an engine is
// still starting) and random modules. Every frame the observer reads is
// audited. At the end: no inconsistent frame, no frame-number regression,
// every engine killed after its first publish was recovered from, modules
// were restarted only when they were killed, nothing leaks.
func TestChaosEngineAndModuleKills(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "chaos")
	cfg := filepath.Join(t.TempDir(), "chaos.yaml")
	modules := []string{"telemetry", "ai-1", "ai-2", "alert"}
	require.NoError(t, os.WriteFile(cfg, []byte(`instance: `+inst+`
engine: {command: [engine, run, --entities, "20000", --churn, "2000", --status, "0"], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
  - {name: ai-1, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: ai-2, command: [modrunner, ai], tier: slow, every: 6, group: ai}
  - {name: alert, command: [modrunner, alert], tier: slow, every: 30, group: solo}
restart: {initial_backoff: 10ms, max_backoff: 100ms, multiplier: 2, reset_after: 100ms}
breaker: {max_failures: 100000, window: 1s}
hang: {heartbeat_timeout: 3s}
shutdown: {grace: 2s}
`), 0o644))

	up := exec.Command(filepath.Join(bin, "engine"), "up", "--config", cfg)
	up.Env = append(os.Environ(), "FDP_SHM_DIR="+shm.Dir)
	out, err := up.StdoutPipe()
	require.NoError(t, err)
	up.Stderr = up.Stdout
	require.NoError(t, up.Start())
	sl := &supLog{started: map[string][]int{}}
	followed := make(chan struct{})
	var echo io.Writer
	if testing.Verbose() && os.Getenv("FDP_CHAOS_ECHO") != "" {
		echo = os.Stderr
	}
	go func() { sl.follow(out, echo); close(followed) }()
	stopped := false
	defer func() {
		if !stopped {
			_ = up.Process.Kill()
			_ = up.Wait()
		}
	}()

	obs := &observation{firstSeen: map[uint32]time.Time{}, lastPub: map[uint32]uint64{}}
	octx, ostop := context.WithCancel(context.Background())
	observed := make(chan struct{})
	go func() { observe(octx, inst, obs); close(observed) }()

	// The first engine publishes.
	waitFor(t, "the first frame", 30*time.Second, func() bool { _, f := obs.latestEngine(); return f > 0 })

	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	seed := rng.Int63()
	rng = rand.New(rand.NewSource(seed))
	t.Logf("chaos seed %d", seed)
	var (
		engineKills, earlyKills, moduleKills int
		// Engine kill -> first frame of the next engine: after a healthy
		// run of the killed engine (the supervisor restarts it at once),
		// and in a crash loop (it ran less than reset_after: backoff).
		outages, loopOutages []time.Duration
		killed               = map[int]bool{}
	)
	end := time.Now().Add(chaosDuration())
	nextModuleKill := time.Now().Add(time.Duration(50+rng.Intn(300)) * time.Millisecond)
	for time.Now().Before(end) {
		// An engine kill, once the current engine has published at least a
		// few frames (it then has a world to recover).
		pid, frames := obs.latestEngine()
		epids := sl.pids("engine")
		require.NotEmpty(t, epids)
		cur := epids[len(epids)-1]
		if int(pid) == cur && frames > 0 && obs.framesOf(pid) >= 3 {
			if rng.Intn(8) == 0 {
				// Now and then kill the next engine too while it starts
				// (before or during its first publish).
				require.NoError(t, syscall.Kill(cur, syscall.SIGKILL))
				killed[cur] = true
				engineKills++
				waitFor(t, "the next engine to start", 10*time.Second, func() bool { return len(sl.pids("engine")) > len(epids) })
				next := sl.pids("engine")[len(epids)]
				time.Sleep(time.Duration(rng.Intn(40)) * time.Millisecond) // a random moment of its start-up
				if syscall.Kill(next, syscall.SIGKILL) == nil {
					killed[next] = true
					earlyKills++
				}
			} else {
				kill := time.Now()
				obs.mu.Lock()
				healthy := kill.Sub(obs.firstSeen[pid]) > 150*time.Millisecond // reset_after 100ms, plus start-up
				obs.mu.Unlock()
				require.NoError(t, syscall.Kill(cur, syscall.SIGKILL))
				killed[cur] = true
				engineKills++
				waitFor(t, "a new engine's first frame", 10*time.Second, func() bool {
					p, f := obs.latestEngine()
					return int(p) != cur && f > 0
				})
				p, _ := obs.latestEngine()
				obs.mu.Lock()
				if healthy {
					outages = append(outages, obs.firstSeen[p].Sub(kill))
				} else {
					loopOutages = append(loopOutages, obs.firstSeen[p].Sub(kill))
				}
				obs.mu.Unlock()
			}
		}
		if time.Now().After(nextModuleKill) {
			name := modules[rng.Intn(len(modules))]
			if ps := sl.pids(name); len(ps) > 0 {
				if syscall.Kill(ps[len(ps)-1], syscall.SIGKILL) == nil && !killed[ps[len(ps)-1]] {
					killed[ps[len(ps)-1]] = true
					moduleKills++
				}
			}
			nextModuleKill = time.Now().Add(time.Duration(50+rng.Intn(300)) * time.Millisecond)
		}
		time.Sleep(time.Duration(100+rng.Intn(400)) * time.Millisecond) // chaos pacing, not synchronisation
	}
	// Let the last engine publish, then stop everything.
	waitFor(t, "the last engine's frames", 10*time.Second, func() bool {
		p, f := obs.latestEngine()
		epids := sl.pids("engine")
		return int(p) == epids[len(epids)-1] && f > 0 && obs.framesOf(p) >= 3
	})
	ostop()
	<-observed
	require.NoError(t, up.Process.Signal(syscall.SIGTERM))
	werr := up.Wait()
	stopped = true
	<-followed

	obs.mu.Lock()
	defer obs.mu.Unlock()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	pcts := func(d []time.Duration) string {
		if len(d) == 0 {
			return "none"
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		at := func(p float64) time.Duration {
			return d[min(len(d)-1, int(p*float64(len(d))))].Round(100 * time.Microsecond)
		}
		return fmt.Sprintf("p50 %v p99 %v max %v (%d)", at(0.5), at(0.99), at(1), len(d))
	}
	restarts := 0
	for _, m := range modules {
		restarts += len(sl.started[m]) - 1
	}
	t.Logf("chaos %v: engine kills %d (+%d during start-up), module kills %d, module restarts %d; frames audited %d, torn reads retried %d, inconsistent %d, regressions %d; engines %d (%d seen by the observer), recovered %d, clean starts %d; outage kill->first frame after a healthy run %s, in a crash loop %s",
		chaosDuration(), engineKills, earlyKills, moduleKills, restarts, obs.audited, obs.torn, len(obs.inconsistent), len(obs.regressions),
		len(sl.started["engine"]), len(obs.engines), sl.recovered, sl.clean, pcts(outages), pcts(loopOutages))
	require.NoError(t, werr, "engine up exits 0 on SIGTERM; last lines:\n%s", strings.Join(sl.tail, "\n"))
	require.Empty(t, obs.inconsistent, "inconsistent frames")
	require.Empty(t, obs.regressions, "frame numbers went backwards")
	// The observer audits whole frames (every column, the arenas) under
	// -race: on a loaded 2-vCPU machine it managed 8.7 frames per engine
	// life, so the floor is 5 per engine kill, and frames of at least a
	// quarter of the engines (most lives are shorter than an audit).
	seen := len(obs.engines) // obs.mu is held (above)
	require.Greater(t, obs.audited, 5*engineKills, "the observer audited frames all along")
	require.GreaterOrEqual(t, 4*seen, len(sl.started["engine"]), "the observer read frames of %d of %d engines", seen, len(sl.started["engine"]))
	require.Greater(t, engineKills, 0)
	// Every engine start after a kill recovered, except those whose
	// predecessor was killed during its own start-up before it had
	// published: such a predecessor may leave nothing newer to recover
	// from, and its successor then recovers from the aside copy (still a
	// recovery) or, only when no engine ever published, starts clean.
	require.Zero(t, sl.clean, "an engine started clean although a world had been published")
	// An engine killed during its start-up may die before it logs its
	// recovery; every other one must have recovered.
	require.GreaterOrEqual(t, sl.recovered+earlyKills, len(sl.started["engine"])-1, "every restarted engine recovered the world")
	require.Equal(t, moduleKills, restarts, "modules restart only when killed (they survive engine restarts); error lines:\n%s",
		strings.Join(sl.errorsLog[:min(len(sl.errorsLog), 30)], "\n"))
	require.Empty(t, sl.hungKills, "no process was judged hung")
	requireNoSegments(t, inst)
}

// framesOf returns how many distinct frames of engine pid were audited
// (an approximation: its last frame minus its first, both as read).
func (o *observation) framesOf(pid uint32) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastPub[pid] - o.firstFrameOf(pid)
}

// firstFrameOf is approximated by the last frame of the engine before it.
// Called with mu held.
func (o *observation) firstFrameOf(pid uint32) uint64 {
	for i, p := range o.engines {
		if p == pid && i > 0 {
			return o.lastPub[o.engines[i-1]]
		}
	}
	return 0
}

// auditLatest audits the latest frame of a mapped world segment: its frame
// number (0 when nothing is published), whether the read must be retried
// (the engine published meanwhile), and the problems found.
func auditLatest(b []byte, lw *layout.World) (frame uint64, torn bool, problems []string) {
	latest, _, _ := layout.UnpackLatest(layout.Load64(b, layout.OffWLatest))
	rep, err := audit.Latest(b, lw)
	switch {
	case errors.Is(err, audit.ErrNothingPublished):
		return 0, false, nil
	case errors.Is(err, audit.ErrRetry):
		return latest, true, nil
	case err != nil:
		return max(latest, 1), false, []string{err.Error()}
	}
	for _, p := range rep.Problems {
		problems = append(problems, p.String())
	}
	return rep.Info.Frame, false, problems
}
