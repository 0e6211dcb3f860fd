// Package supervisor launches the engine process and the module processes of
// an FDP instance from a YAML configuration, restarts crashed processes with
// exponential backoff and a per-process circuit breaker (but not a module
// that exits with layout.ExitRefused: StateRefused), kills hung modules
// and a hung engine (see HangConfig), reclaims a dead module's resources
// through hooks, and shuts everything down gracefully (SIGTERM, then SIGKILL
// after a grace period). Children get PDEATHSIG=SIGKILL so they never outlive
// a killed supervisor.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/layout"
)

// State is the state of one supervised child.
type State string

// Child states.
const (
	StateStarting State = "starting" // not started yet
	StateRunning  State = "running"  // process alive
	StateBackoff  State = "backoff"  // dead, waiting to be restarted
	StateBroken   State = "broken"   // circuit breaker tripped: not restarted again
	StateStopped  State = "stopped"  // stopped by shutdown
	// StateRefused: a module exited with layout.ExitRefused, the engine
	// refused it for a reason a restart cannot change; not restarted again.
	StateRefused State = "refused"
)

func (s State) String() string { return string(s) }

// Hooks are callbacks into the rest of the system. Every field is optional.
// Hooks are called from supervisor goroutines; they must be safe for
// concurrent use (different children call them concurrently).
type Hooks struct {
	// BeforeStart runs once at the start of Run, before any process is
	// started (e.g. shm.GC of stale segments). An error aborts Run.
	BeforeStart func() error
	// OnStart is called after a child process has started.
	OnStart func(name string, pid int)
	// OnModuleDeath is called as soon as a module's death is seen, with the
	// exit status text ("signal: killed", "exit status 2").
	OnModuleDeath func(name string, pid int, status string)
	// OnEngineDeath is called as soon as the engine's death is seen.
	OnEngineDeath func(pid int, status string)
	// Reclaim is called after a module died and before it is restarted, once
	// per death, with the dead pid: release its leases and reset its ring.
	Reclaim func(name string, pid int) error
	// Heartbeat reports the last heartbeat of a child: for a module, the
	// heartbeat in its segment of the running engine (ok=false: it has none,
	// e.g. it has not attached yet); for the engine (name EngineName), the
	// time of its last publish (ok=true with a time before the engine's
	// start, or zero, when the current engine has not published yet;
	// ok=false: not judged, and modules without a heartbeat are not judged
	// either). See HangConfig for the rules; a hung child is SIGKILLed and
	// counted as a hang.
	Heartbeat func(name string) (last time.Time, ok bool)
	// OnBackoff is called when a restart is scheduled after delay.
	OnBackoff func(name string, delay time.Duration)
	// OnBroken is called when a child's circuit breaker trips.
	OnBroken func(name string, deaths int)
	// OnRefused is called when a module exited with layout.ExitRefused and
	// will not be restarted, with the last line it wrote to stderr ("" if
	// none; a record as its message and key=value attributes): normally the
	// refusal.
	OnRefused func(name string, pid int, lastStderr string)
	// AfterStop runs once at the end of Run, after every child is gone (e.g.
	// shm.RemoveInstance). Its error is returned by Run if Run has none.
	AfterStop func() error
}

// Options configure a Supervisor.
type Options struct {
	// Logger receives supervisor events and every record the children
	// write, re-emitted as its own (attributes child=<name>,
	// stream=stdout|stderr, then the child's: childlog.go). Default
	// slog.Default().
	Logger *slog.Logger
	Hooks  Hooks
	// OnStatus, if set, receives Status() every StatusEvery (default 1 s).
	OnStatus    func([]ChildStatus)
	StatusEvery time.Duration
	// ExeDir is where commands are looked up before PATH (default: the
	// directory of the running executable).
	ExeDir string
}

// ChildStatus is a snapshot of one child.
type ChildStatus struct {
	Name   string
	Engine bool
	PID    int // 0 when not running
	State  State
	// Restarts counts processes started after the first one.
	Restarts int
	// Deaths counts unexpected exits (hang kills included).
	Deaths int
	// Hangs counts SIGKILLs because of a stale heartbeat.
	Hangs int
	// BreakerTrips is 1 once the circuit breaker tripped.
	BreakerTrips int
	// LastExit is the exit status text of the last process ("" if none).
	LastExit string
	// Uptime of the current process (0 when not running).
	Uptime time.Duration
	// DetectLatency of the last death the supervisor caused (a hang kill):
	// from its SIGKILL to the death hook call; 0 if none. An external
	// death's instant is not observable, so it has no latency.
	DetectLatency time.Duration
	// Detect counts the detection latencies of every death the supervisor
	// caused (DetectLatency is the last one's); external deaths are only in
	// Deaths.
	Detect LatencyHistogram
	// LastBackoff is the last scheduled restart delay.
	LastBackoff time.Duration
	// Refusal is, in StateRefused, the last line the refused process wrote
	// to stderr ("" if none; a record as its message and key=value
	// attributes).
	Refusal string
}

var errStopping = errors.New("fdp/supervisor: stopping")

// maxLatencySamples bounds the detection-latency samples kept per child.
const maxLatencySamples = 4096

// refusalOutputWait bounds the wait, after a module exited with
// layout.ExitRefused, for the end of its output (its last stderr line is
// the refusal): a grandchild may hold the pipes open.
const refusalOutputWait = time.Second

// procOut is the output of one child process: its two pumps write to it.
type procOut struct {
	lastErr atomic.Pointer[string] // last non-empty stderr line
	left    atomic.Int32           // pumps still reading
	done    chan struct{}          // closed when both pumps ended (EOF)
}

func newProcOut() *procOut {
	o := &procOut{done: make(chan struct{})}
	o.left.Store(2)
	return o
}

// pumpDone is called by each pump when it ends.
func (o *procOut) pumpDone() {
	if o.left.Add(-1) == 0 {
		close(o.done)
	}
}

// lastStderr waits up to limit for the end of the output and returns the
// last stderr line seen.
func (o *procOut) lastStderr(limit time.Duration) string {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-o.done:
	case <-t.C:
	}
	if p := o.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

type child struct {
	name   string
	engine bool
	argv   []string // argv[0] resolved at Run
	env    []string
	cred   *syscall.Credential // run as another user (ModuleConfig.User); nil: as the supervisor
	done   chan struct{}       // closed when the child's loop ended

	// Guarded by Supervisor.mu.
	proc      *os.Process
	out       *procOut // proc's output
	started   time.Time
	killedAt  time.Time // SIGKILL sent by the supervisor to proc (hang)
	state     State
	restarts  int
	deaths    int
	hangs     int
	trips     int
	lastExit  string
	lastLat   time.Duration
	lats      []time.Duration
	detect    LatencyHistogram
	failures  []time.Time // deaths within the breaker window
	backoff   time.Duration
	lastDelay time.Duration
	refusal   string // StateRefused: the last stderr line
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// Supervisor runs one instance. Create it with New, run it once with Run.
type Supervisor struct {
	cfg      *Config
	launched atomic.Bool // Run got past its checks and BeforeStart: something was started
	opt      Options
	log      *slog.Logger
	children []*child // [0] is the engine

	spawnCh chan spawnReq
	stopCh  chan struct{} // closed when shutdown starts
	endCh   chan struct{} // closed by finish: the run must end
	outWG   sync.WaitGroup

	mu       sync.Mutex
	ran      bool
	stopping bool
	ended    bool
	endErr   error
	pipes    map[*os.File]struct{} // open read ends of children's output
}

// Launched reports whether Run got past its checks (commands, BeforeStart)
// and started children: before that there is nothing to summarise.
func (s *Supervisor) Launched() bool { return s.launched.Load() }

// New validates cfg and returns a Supervisor for it.
func New(cfg *Config, opts Options) (*Supervisor, error) {
	if cfg == nil {
		return nil, errors.New("fdp/supervisor: nil config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StatusEvery <= 0 {
		opts.StatusEvery = time.Second
	}
	if opts.ExeDir == "" {
		if exe, err := os.Executable(); err == nil {
			opts.ExeDir = filepath.Dir(exe)
		}
	}
	s := &Supervisor{
		cfg:     cfg,
		opt:     opts,
		log:     opts.Logger,
		spawnCh: make(chan spawnReq),
		stopCh:  make(chan struct{}),
		endCh:   make(chan struct{}),
		pipes:   map[*os.File]struct{}{},
	}
	base := os.Environ()
	eng := &child{name: EngineName, engine: true, argv: slices.Clone(cfg.Engine.Command), state: StateStarting, done: make(chan struct{})}
	// Modules of other users reach the engine only through its control
	// socket: the engine command admits their uids.
	uids, err := cfg.AllowUIDs()
	if err != nil {
		return nil, err
	}
	for _, u := range uids {
		eng.argv = append(eng.argv, "--allow-uid", strconv.FormatUint(uint64(u), 10))
	}
	if r := cfg.Record; r.File != "" {
		file, err := filepath.Abs(r.File) // the engine's working directory is the supervisor's today; said once
		if err != nil {
			return nil, fmt.Errorf("fdp/supervisor: config: record.file: %w", err)
		}
		// An earlier run's recording is refused here, once, in one line: an
		// engine child refused for it would be restarted until its breaker
		// trips. Past this check every engine child of this run may replace
		// the file (--record-overwrite): the first creates it, and a restart
		// after a crash finds the dead engine's file already moved aside to
		// FILE.<frame> by recovery (or holding no frame: nothing to keep).
		// A file that is not a recording is still never replaced (the
		// engine's own check).
		if fi, err := os.Stat(file); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 && !r.Overwrite {
			return nil, fmt.Errorf("fdp/supervisor: config: record.file %s exists (%d bytes, an earlier run's recording?): move it, or set record: {overwrite: true}", file, fi.Size())
		}
		eng.argv = append(eng.argv, "--record", file, "--record-overwrite")
		if r.KeyframeEvery > 0 {
			eng.argv = append(eng.argv, "--record-keyframe", strconv.Itoa(r.KeyframeEvery))
		}
		if r.Compression != "" {
			eng.argv = append(eng.argv, "--record-compression", r.Compression)
		}
	}
	// FDP_METRICS is never inherited: the supervisor's own (the user's
	// address for `engine run`) would make every engine child bind the same
	// address. Only an Env that sets it (up's private socket) gives it.
	eng.env = childEnv(base, cfg.Engine.Env, map[string]string{
		"FDP_INSTANCE": cfg.Instance, "FDP_MODULE": EngineName, "FDP_ROLE": "engine",
		"FDP_TIER": "", "FDP_EVERY": "", "FDP_GROUP": "", logs.EnvVar: logs.JSON.String(), "FDP_METRICS": "",
	})
	s.children = append(s.children, eng)
	for _, m := range cfg.Modules {
		c := &child{name: m.Name, argv: slices.Clone(m.Command), state: StateStarting, done: make(chan struct{})}
		if m.User != "" {
			cred, err := ParseUser(m.User)
			if err != nil {
				return nil, fmt.Errorf("fdp/supervisor: config: module %q: %w", m.Name, err)
			}
			// Groups empty, NoSetGroups false: setgroups(0) clears the
			// supplementary groups before setgid and setuid.
			c.cred = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: []uint32{}}
		}
		c.env = childEnv(base, m.Env, map[string]string{
			"FDP_INSTANCE": cfg.Instance, "FDP_MODULE": m.Name, "FDP_ROLE": "module",
			"FDP_TIER": m.Tier, "FDP_EVERY": everyEnv(m.Every), "FDP_GROUP": m.Group,
			logs.EnvVar: logs.JSON.String(), "FDP_METRICS": "",
		})
		s.children = append(s.children, c)
	}
	return s, nil
}

// childEnv returns base without the keys of extra and fdp, then fdp's
// non-empty values and extra (sorted by key; extra wins over fdp). An empty
// fdp value removes an inherited variable without exporting it empty: a
// module must tell "the config said nothing" ($FDP_TIER unset) from a value.
// everyEnv is $FDP_EVERY for a module's Every: empty (the module keeps its
// own Spec.Every) for 0.
func everyEnv(every int) string {
	if every == 0 {
		return ""
	}
	return strconv.Itoa(every)
}

func childEnv(base []string, extra, fdp map[string]string) []string {
	out := make([]string, 0, len(base)+len(extra)+len(fdp))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := fdp[k]; ok {
			continue
		}
		if _, ok := extra[k]; ok {
			continue
		}
		out = append(out, kv)
	}
	for _, k := range slices.Sorted(maps.Keys(fdp)) {
		if _, ok := extra[k]; !ok && fdp[k] != "" {
			out = append(out, k+"="+fdp[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		out = append(out, k+"="+extra[k])
	}
	return out
}

// Run starts the engine, then the modules, supervises them until ctx is
// cancelled (or the engine is beyond help), then shuts everything down:
// SIGTERM to the modules, then to the engine, SIGKILL to whatever is left
// after shutdown.grace (per phase), and finally Hooks.AfterStop. It returns
// nil after a shutdown requested through ctx, or an error when the engine's
// circuit breaker tripped, the engine exited with restart disabled, or a
// command cannot be found. Run may be called once.
func (s *Supervisor) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		return errors.New("fdp/supervisor: Run called twice")
	}
	s.ran = true
	s.mu.Unlock()

	// Refused before anything starts: a program that cannot be found
	// would only be fork-exec'd until its breaker trips.
	if err := s.cfg.CheckCommands(s.opt.ExeDir); err != nil {
		return err
	}
	for _, c := range s.children {
		p, err := resolveIn(s.opt.ExeDir, c.argv[0])
		if err != nil { // removed between the check and here
			return fmt.Errorf("fdp/supervisor: %s: %w", c.name, err)
		}
		c.argv[0] = p
	}
	if h := s.opt.Hooks.BeforeStart; h != nil {
		if err := h(); err != nil {
			return fmt.Errorf("fdp/supervisor: before start: %w", err)
		}
	}

	s.launched.Store(true)
	spawnerDone := make(chan struct{})
	go s.spawner(spawnerDone)
	defer func() {
		close(s.spawnCh)
		<-spawnerDone
	}()

	s.log.Info("supervisor starting", "instance", s.cfg.Instance, "modules", len(s.cfg.Modules), "pid", os.Getpid())
	// The engine first: its first process is started before any module's.
	eng := s.children[0]
	if first, err := s.start(eng); err != nil {
		for _, c := range s.children {
			close(c.done)
		}
		s.finish(fmt.Errorf("fdp/supervisor: cannot start the engine: %w", err))
	} else {
		go s.loop(eng, first)
		for _, c := range s.children[1:] {
			go s.loop(c, nil)
		}
	}

	var bg sync.WaitGroup
	bgStop := make(chan struct{})
	if (s.cfg.Hang.HeartbeatTimeout > 0 || s.cfg.Hang.EngineTimeout > 0) && s.opt.Hooks.Heartbeat != nil {
		bg.Add(1)
		go func() { defer bg.Done(); s.hangMonitor(bgStop) }()
	}
	if s.opt.OnStatus != nil {
		bg.Add(1)
		go func() {
			defer bg.Done()
			t := time.NewTicker(s.opt.StatusEvery)
			defer t.Stop()
			for {
				select {
				case <-bgStop:
					return
				case <-t.C:
					s.opt.OnStatus(s.Status())
				}
			}
		}()
	}

	select {
	case <-ctx.Done():
		s.log.Info("supervisor stopping", "instance", s.cfg.Instance, "reason", context.Cause(ctx))
	case <-s.endCh:
	}
	s.shutdown()
	close(bgStop)
	bg.Wait()

	s.mu.Lock()
	runErr := s.endErr
	s.mu.Unlock()
	if h := s.opt.Hooks.AfterStop; h != nil {
		if err := h(); err != nil {
			s.log.Error("after-stop hook failed", "err", err)
			if runErr == nil {
				runErr = fmt.Errorf("fdp/supervisor: after stop: %w", err)
			}
		}
	}
	s.log.Info("supervisor stopped", "instance", s.cfg.Instance, "err", runErr)
	return runErr
}

// finish ends the run with err (nil: a normal end).
func (s *Supervisor) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	s.endErr = err
	close(s.endCh)
}

// spawner forks every child from one OS thread that stays locked, and so
// alive, for the whole run: Linux delivers PDEATHSIG when the forking
// *thread* exits, so forking from arbitrary runtime threads could kill
// children early.
func (s *Supervisor) spawner(done chan struct{}) {
	runtime.LockOSThread()
	defer close(done)
	defer runtime.UnlockOSThread()
	for r := range s.spawnCh {
		r.err <- r.cmd.Start()
	}
}

// start starts one process of c unless shutdown has begun (errStopping).
func (s *Supervisor) start(c *child) (*os.Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return nil, errStopping
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	attr := sysProcAttr()
	attr.Credential = c.cred
	cmd := &exec.Cmd{Path: c.argv[0], Args: c.args(), Env: c.env, Stdout: outW, Stderr: errW, SysProcAttr: attr}
	req := spawnReq{cmd: cmd, err: make(chan error, 1)}
	s.spawnCh <- req
	err = <-req.err
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	s.pipes[outR] = struct{}{}
	s.pipes[errR] = struct{}{}
	out := newProcOut()
	s.outWG.Add(2)
	go s.pump(outR, c.name, "stdout", out)
	go s.pump(errR, c.name, "stderr", out)
	c.proc = cmd.Process
	c.out = out
	c.started = time.Now()
	c.killedAt = time.Time{}
	c.state = StateRunning
	return cmd.Process, nil
}

// loop supervises child c: wait for its process, handle the death, back off,
// restart; until shutdown or the breaker trips. first is a process already
// started by Run (the engine), or nil.
func (s *Supervisor) loop(c *child, first *os.Process) {
	defer close(c.done)
	proc := first
	var err error
	if proc == nil {
		proc, err = s.start(c)
	}
	for {
		if errors.Is(err, errStopping) {
			break
		}
		var status string
		var seen time.Time
		pid := 0
		refused := false
		if err != nil {
			status = "start failed: " + err.Error()
			seen = time.Now()
		} else {
			pid = proc.Pid
			if h := s.opt.Hooks.OnStart; h != nil {
				h(c.name, pid)
			}
			s.log.Info("child started", "child", c.name, "pid", pid)
			ps, werr := proc.Wait()
			seen = time.Now()
			if werr != nil {
				status = "wait: " + werr.Error()
			} else {
				status = ps.String()
				// Only a module can be refused; the engine's 78 is a crash.
				refused = !c.engine && ps.ExitCode() == layout.ExitRefused
			}
		}
		if !s.onDeath(c, pid, status, seen, refused) {
			break
		}
		proc, err = s.start(c)
	}
	s.mu.Lock()
	c.proc = nil
	if c.state != StateBroken && c.state != StateRefused {
		c.state = StateStopped
	}
	s.mu.Unlock()
}

// onDeath records a death of c and reports whether to restart it (after the
// backoff delay, which onDeath waits). A module that exited with
// layout.ExitRefused (refused) is not restarted: it goes to StateRefused,
// without counting towards its breaker.
func (s *Supervisor) onDeath(c *child, pid int, status string, seen time.Time, refused bool) bool {
	s.mu.Lock()
	// The detection latency is known only for a death the supervisor caused:
	// from its SIGKILL. An external death's instant is not observable (the
	// kernel reports the exit, not when the signal was sent or the process
	// ended; the wait's return is already the handling): it has no latency
	// rather than the few microseconds from the wait's return.
	killedAt := c.killedAt
	known := !killedAt.IsZero() && killedAt.Before(seen)
	uptime := seen.Sub(c.started)
	if pid == 0 {
		uptime = 0 // the start itself failed
	}
	out := c.out
	c.proc = nil
	c.out = nil
	c.lastExit = status
	if s.stopping {
		s.mu.Unlock()
		return false // an expected death during shutdown
	}
	c.state = StateBackoff
	if refused {
		c.state = StateRefused
	}
	s.mu.Unlock()

	lat := time.Duration(-1)
	if known {
		lat = time.Since(killedAt)
	}
	if c.engine {
		if h := s.opt.Hooks.OnEngineDeath; h != nil {
			h(pid, status)
		}
	} else if h := s.opt.Hooks.OnModuleDeath; h != nil {
		h(c.name, pid, status)
	}
	if refused {
		return s.onRefused(c, pid, status, uptime, lat, out)
	}
	attrs := []any{"child", c.name, "pid", pid, "status", status, "uptime", logs.Round3(uptime)}
	if lat >= 0 {
		attrs = append(attrs, "detect", logs.Round3(lat))
	}
	s.log.Warn("child died", attrs...)
	if !c.engine && pid != 0 {
		if h := s.opt.Hooks.Reclaim; h != nil {
			if err := h(c.name, pid); err != nil {
				s.log.Error("reclaim failed", "child", c.name, "pid", pid, "err", err)
			}
		}
	}

	s.mu.Lock()
	c.recordDeath(lat)
	win := s.cfg.Breaker.Window.D()
	keep := c.failures[:0]
	for _, t := range c.failures {
		if seen.Sub(t) < win {
			keep = append(keep, t)
		}
	}
	c.failures = append(keep, seen)
	failures := len(c.failures)
	broken := failures > s.cfg.Breaker.MaxFailures
	if broken {
		c.state = StateBroken
		c.trips++
	}
	// The engine's first restart after a healthy run (or its first death)
	// is immediate: every module waits on it, and its outage is the world's.
	// A crash loop still backs off from InitialBackoff on.
	immediate := c.engine && (c.backoff <= 0 || uptime >= s.cfg.Restart.ResetAfter.D())
	c.backoff = nextBackoff(c.backoff, uptime, s.cfg.Restart)
	delay := c.backoff
	if immediate {
		delay = 0
	}
	if !broken {
		c.lastDelay = delay
	}
	s.mu.Unlock()

	if broken {
		s.log.Error("circuit breaker tripped: not restarting", "child", c.name, "deaths", failures, "window", win, "last_exit", status)
		if h := s.opt.Hooks.OnBroken; h != nil {
			h(c.name, failures)
		}
		if c.engine {
			s.finish(fmt.Errorf("fdp/supervisor: engine circuit breaker tripped: %d deaths within %v (last: %s)", failures, win, status))
		}
		return false
	}
	if c.engine && !s.cfg.Engine.Restart {
		s.mu.Lock()
		c.state = StateStopped
		s.mu.Unlock()
		if status == "exit status 0" {
			s.finish(nil)
		} else {
			s.finish(fmt.Errorf("fdp/supervisor: engine exited (%s) and restart is disabled", status))
		}
		return false
	}
	if h := s.opt.Hooks.OnBackoff; h != nil {
		h(c.name, delay)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.stopCh:
		return false
	}
	s.mu.Lock()
	c.restarts++
	s.mu.Unlock()
	return true
}

// onRefused ends the supervision of module c, whose process pid exited
// with layout.ExitRefused: the engine refused it for a reason a restart
// cannot change. It is logged once, with the process's last stderr line
// (the module's own account of the refusal), and never restarted; it does
// not count towards the breaker. The other children go on. It returns
// false (no restart).
func (s *Supervisor) onRefused(c *child, pid int, status string, uptime, lat time.Duration, out *procOut) bool {
	line := ""
	if out != nil {
		line = out.lastStderr(refusalOutputWait)
	}
	if h := s.opt.Hooks.Reclaim; h != nil && pid != 0 {
		// It may have held something of an engine before a rejoin was
		// refused.
		if err := h(c.name, pid); err != nil {
			s.log.Error("reclaim failed", "child", c.name, "pid", pid, "err", err)
		}
	}
	s.mu.Lock()
	c.recordDeath(lat)
	c.refusal = line
	s.mu.Unlock()
	s.log.Error("module refused by the engine: not restarting", "child", c.name, "pid", pid, "status", status,
		"uptime", logs.Round3(uptime), "last_stderr", line)
	if h := s.opt.Hooks.OnRefused; h != nil {
		h(c.name, pid, line)
	}
	return false
}

// nextBackoff returns the delay before the next restart given the previous
// delay (0 = none yet) and how long the dead process ran: InitialBackoff
// after a run of at least ResetAfter, else the previous delay times
// Multiplier, capped at MaxBackoff.
func nextBackoff(prev, uptime time.Duration, r RestartConfig) time.Duration {
	if prev <= 0 || uptime >= r.ResetAfter.D() {
		return r.InitialBackoff.D()
	}
	next := float64(prev) * r.Multiplier
	if next >= float64(r.MaxBackoff.D()) {
		return r.MaxBackoff.D()
	}
	return time.Duration(next)
}

// HangReason tells why the hang monitor killed a child.
type HangReason int

// Hang reasons.
const (
	HangNone          HangReason = iota
	HangNoHeartbeat              // a module's heartbeat is older than hang.heartbeat_timeout
	HangNotAttached              // a module has not attached to an engine publishing for longer than hang.heartbeat_timeout
	HangEngineStalled            // the engine's last publish is older than hang.engine_timeout
	HangEngineNoStart            // the engine has not published within hang.engine_start_timeout of its start
)

func (r HangReason) String() string {
	switch r {
	case HangNone:
		return "none"
	case HangNoHeartbeat:
		return "no heartbeat"
	case HangNotAttached:
		return "not attached to the running engine"
	case HangEngineStalled:
		return "engine stopped publishing"
	case HangEngineNoStart:
		return "engine never published after its start"
	}
	return fmt.Sprintf("HangReason(%d)", int(r))
}

// hangState is what the hang monitor knows about the engine between checks.
type hangState struct {
	engine  *os.Process // the engine process upSince refers to
	upSince time.Time   // first publish of that process seen (zero: none yet, or stalled)
}

// judgeEngine returns why the running engine (started at started) is hung,
// or HangNone; it keeps h.upSince, the start of its current run of publishes.
func (s *Supervisor) judgeEngine(h *hangState, proc *os.Process, started, now time.Time) (HangReason, time.Duration) {
	if h.engine != proc {
		h.engine, h.upSince = proc, time.Time{}
	}
	last, ok := s.opt.Hooks.Heartbeat(EngineName)
	if !ok {
		h.upSince = time.Time{}
		return HangNone, 0
	}
	hang := s.cfg.Hang
	if last.After(started) { // published since it started
		age := now.Sub(last)
		limit := hang.EngineTimeout.D()
		if limit <= 0 {
			limit = hang.HeartbeatTimeout.D()
		}
		switch {
		case age > limit:
			h.upSince = time.Time{} // stalled: modules cannot attach now
		case h.upSince.IsZero():
			h.upSince = last // publishing (again) since about then
		}
		if hang.EngineTimeout > 0 && age > hang.EngineTimeout.D() {
			return HangEngineStalled, age
		}
		return HangNone, 0
	}
	h.upSince = time.Time{}
	if age := now.Sub(started); hang.EngineTimeout > 0 && age > hang.EngineStartTimeout.D() {
		return HangEngineNoStart, age
	}
	return HangNone, 0
}

// judgeModule returns why the running module c (started at started) is
// hung, or HangNone. A module without a known heartbeat (no segment in the
// running engine) is judged only once the engine has been publishing for
// longer than hang.heartbeat_timeout, so that a module rejoining a restarted
// engine has that long to attach, and once its process is older than
// hang.attach_timeout (a new process may take that long to start up).
func (s *Supervisor) judgeModule(h *hangState, c *child, started, now time.Time) (HangReason, time.Duration) {
	timeout := s.cfg.Hang.HeartbeatTimeout.D()
	if timeout <= 0 {
		return HangNone, 0
	}
	last, ok := s.opt.Hooks.Heartbeat(c.name)
	if ok {
		ref := last
		if started.After(ref) {
			ref = started
		}
		if age := now.Sub(ref); age > timeout {
			return HangNoHeartbeat, age
		}
		return HangNone, 0
	}
	if h.upSince.IsZero() || now.Sub(started) <= max(timeout, s.cfg.Hang.AttachTimeout.D()) {
		return HangNone, 0
	}
	ref := h.upSince
	if started.After(ref) {
		ref = started
	}
	if age := now.Sub(ref); age > timeout {
		return HangNotAttached, age
	}
	return HangNone, 0
}

// hangMonitor SIGKILLs running children that are hung (see HangConfig):
// the engine first, so that the modules are judged against its state.
func (s *Supervisor) hangMonitor(stop chan struct{}) {
	hang := s.cfg.Hang
	timeout := hang.HeartbeatTimeout.D()
	if timeout <= 0 || (hang.EngineTimeout > 0 && hang.EngineTimeout.D() < timeout) {
		timeout = hang.EngineTimeout.D()
	}
	every := min(max(timeout/4, time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var h hangState
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, c := range s.children {
			s.mu.Lock()
			proc, started, killed := c.proc, c.started, !c.killedAt.IsZero()
			stopping := s.stopping
			s.mu.Unlock()
			if stopping {
				return
			}
			if proc == nil || killed {
				if c.engine {
					h.engine, h.upSince = nil, time.Time{}
				}
				continue
			}
			now := time.Now()
			var why HangReason
			var age time.Duration
			if c.engine {
				why, age = s.judgeEngine(&h, proc, started, now)
			} else {
				why, age = s.judgeModule(&h, c, started, now)
			}
			if why == HangNone {
				continue
			}
			s.mu.Lock()
			if c.proc != proc || !c.killedAt.IsZero() || s.stopping {
				s.mu.Unlock()
				continue
			}
			c.killedAt = now
			c.hangs++
			s.mu.Unlock()
			s.log.Warn("child hung: killing it", "child", c.name, "pid", proc.Pid, "reason", why.String(),
				"for", logs.Round3(age), "stopped", processStopped(proc.Pid))
			_ = proc.Signal(syscall.SIGKILL)
		}
	}
}

// shutdown stops every child: modules first, then the engine.
func (s *Supervisor) shutdown() {
	s.mu.Lock()
	s.stopping = true
	close(s.stopCh)
	s.mu.Unlock()
	grace := s.cfg.Shutdown.Grace.D()
	s.stopGroup(s.children[1:], grace)
	s.stopGroup(s.children[:1], grace)

	// Output readers end at EOF; a grandchild holding a pipe open must not
	// block the shutdown: close what is left after a short wait.
	done := make(chan struct{})
	go func() { s.outWG.Wait(); close(done) }()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.mu.Lock()
		for f := range s.pipes {
			f.Close()
		}
		s.mu.Unlock()
		<-done
	}
}

// stopGroup sends SIGTERM to the children's processes, waits up to grace for
// their loops to end, then SIGKILLs the rest and waits for them.
func (s *Supervisor) stopGroup(cs []*child, grace time.Duration) {
	signal := func(sig syscall.Signal) {
		for _, c := range cs {
			s.mu.Lock()
			p := c.proc
			s.mu.Unlock()
			if p != nil {
				_ = p.Signal(sig)
			}
		}
	}
	waitAll := func(deadline <-chan time.Time) bool {
		for _, c := range cs {
			select {
			case <-c.done:
			case <-deadline:
				return false
			}
		}
		return true
	}
	signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	if waitAll(t.C) {
		return
	}
	for _, c := range cs {
		select {
		case <-c.done:
		default:
			s.log.Warn("child ignored SIGTERM: killing it", "child", c.name, "grace", grace)
		}
	}
	signal(syscall.SIGKILL)
	waitAll(nil)
}

// recordDeath counts a death of c and its detection latency when known (lat
// >= 0; the last maxLatencySamples are kept). Called with the supervisor's mu
// held.
func (c *child) recordDeath(lat time.Duration) {
	c.deaths++
	if lat < 0 {
		return
	}
	c.lastLat = lat
	c.detect.Record(lat)
	if len(c.lats) == maxLatencySamples {
		copy(c.lats, c.lats[1:])
		c.lats = c.lats[:maxLatencySamples-1]
	}
	c.lats = append(c.lats, lat)
}

// args is the argv a child is executed with: a module's argv[0] is its
// program's base name followed by its module name in brackets
// ("modrunner [ai-1]"), so that ps and /proc/PID/cmdline tell apart modules
// started from the same command (the program itself is c.argv[0], the
// resolved path, as exec.Cmd.Path). The engine's argv is left as is: it is
// the program that owns the world, and its command line names it already.
func (c *child) args() []string {
	if c.engine {
		return c.argv
	}
	a := slices.Clone(c.argv)
	a[0] = filepath.Base(c.argv[0]) + " [" + c.name + "]"
	return a
}
