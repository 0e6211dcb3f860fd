package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Child roles of the re-executed test binary, selected by $FDP_TEST_CHILD.
func TestMain(m *testing.M) {
	if role := os.Getenv("FDP_TEST_CHILD"); role != "" {
		os.Exit(childMain(role))
	}
	os.Exit(m.Run())
}

func childMain(role string) int {
	name := os.Getenv("FDP_MODULE")
	dir := os.Getenv("FDP_TEST_DIR")
	block := func() int {
		for {
			time.Sleep(time.Hour) // the child just exists until it is killed
		}
	}
	switch role {
	case "sleeper", "stubborn":
		if role == "stubborn" {
			signal.Ignore(syscall.SIGTERM)
		}
		fmt.Printf("sleeper %s started instance=%s tier=%s every=%s group=%s role=%s\n", name,
			os.Getenv("FDP_INSTANCE"), os.Getenv("FDP_TIER"), os.Getenv("FDP_EVERY"), os.Getenv("FDP_GROUP"), os.Getenv("FDP_ROLE"))
		fmt.Fprintf(os.Stderr, "stderr line from %s\n", name)
		os.Stdout.WriteString("part-a ")
		time.Sleep(5 * time.Millisecond) // two writes: the supervisor must still log one line
		os.Stdout.WriteString("part-b\n")
		return block()
	case "crasher":
		fmt.Printf("crasher %s exiting\n", name)
		return 3
	case "exiter":
		// Writes two stderr lines and exits with $FDP_TEST_EXIT (a module
		// refused by the engine exits with layout.ExitRefused).
		code, err := strconv.Atoi(os.Getenv("FDP_TEST_EXIT"))
		if err != nil {
			return 2
		}
		fmt.Fprintf(os.Stderr, "exiter %s starting\n", name)
		fmt.Fprintf(os.Stderr, "exiter %s: exit %d\n\n", name, code)
		return code
	case "hanger":
		hb := filepath.Join(dir, name+".hb")
		marker := filepath.Join(dir, name+".hung")
		_, err := os.Stat(marker)
		hangSoon := errors.Is(err, os.ErrNotExist)
		if hangSoon {
			if err := os.WriteFile(marker, nil, 0o600); err != nil {
				return 1
			}
		}
		for i := 0; !hangSoon || i < 5; i++ {
			if err := os.WriteFile(hb, []byte{byte(i)}, 0o600); err != nil {
				return 1
			}
			time.Sleep(5 * time.Millisecond) // heartbeat period
		}
		return block()
	case "beater":
		// An engine stand-in: its "publish" is a write of its pid into
		// engine.hb every 5 ms.
		for {
			if err := writeAtomic(filepath.Join(dir, "engine.hb"), strconv.Itoa(os.Getpid())); err != nil {
				return 1
			}
			time.Sleep(5 * time.Millisecond) // publish period
		}
	case "attacher", "slowattacher":
		// A module stand-in that (re)attaches to whatever engine runs: every
		// 5 ms it writes the pid of the current engine into <name>.hb. A
		// slow one starts up for $FDP_ATTACH_DELAY first.
		if role == "slowattacher" {
			d, err := time.ParseDuration(os.Getenv("FDP_ATTACH_DELAY"))
			if err != nil {
				return 1
			}
			time.Sleep(d) // a slow start-up, as a stand-in
		}
		for {
			if b, err := os.ReadFile(filepath.Join(dir, "engine.hb")); err == nil {
				if err := writeAtomic(filepath.Join(dir, name+".hb"), string(b)); err != nil {
					return 1
				}
			}
			time.Sleep(5 * time.Millisecond) // heartbeat period
		}
	case "super":
		return superMain(dir)
	case "whoami":
		groups, _ := os.Getgroups()
		fmt.Printf("whoami %s uid=%d gid=%d groups=%v args=%q\n", name, os.Getuid(), os.Getgid(), groups, os.Args[1:])
		return block()
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// superMain runs a supervisor (engine and two modules, all sleepers) and
// prints "READY <pid> <pid> <pid>" once all three started.
func superMain(dir string) int {
	cfg := baseConfig(dir)
	cfg.Modules = []ModuleConfig{mod("m1", "sleeper"), mod("m2", "sleeper")}
	var mu sync.Mutex
	pids := map[string]int{}
	s, err := New(cfg, Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Hooks: Hooks{OnStart: func(name string, pid int) {
			mu.Lock()
			defer mu.Unlock()
			pids[name] = pid
			if len(pids) == 3 {
				fmt.Printf("READY %d %d %d\n", pids[EngineName], pids["m1"], pids["m2"])
			}
		}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// writeAtomic replaces the file at path with data (rename of a temporary
// file: readers never see it half-written).
func writeAtomic(path, data string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func childCmd(role string) ([]string, map[string]string) {
	return []string{os.Args[0]}, map[string]string{"FDP_TEST_CHILD": role}
}

func mod(name, role string) ModuleConfig {
	cmd, env := childCmd(role)
	return ModuleConfig{Name: name, Command: cmd, Env: env, Tier: TierFast, Every: 1}
}

// baseConfig: a sleeper engine, fast backoff, a generous breaker.
func baseConfig(dir string) *Config {
	c := defaults()
	c.Instance = fmt.Sprintf("t%d", os.Getpid())
	cmd, env := childCmd("sleeper")
	env["FDP_TEST_DIR"] = dir
	c.Engine = EngineConfig{Command: cmd, Env: env, Restart: true}
	c.Restart.InitialBackoff = Duration(time.Millisecond)
	c.Restart.MaxBackoff = Duration(4 * time.Millisecond)
	c.Breaker.MaxFailures = 1000
	c.Hang.HeartbeatTimeout = 0
	c.Shutdown.Grace = Duration(2 * time.Second)
	return &c
}

// ev is one hook call.
type ev struct {
	kind   string // start, death, reclaim, backoff, broken, refused
	name   string
	pid    int
	status string
	delay  time.Duration
	at     time.Time
}

// recorder records hook calls in order. wait hands out matching events in
// order, each once per (kind, name) key, never losing other events.
type recorder struct {
	mu       sync.Mutex
	log      []ev
	changed  chan struct{} // closed and replaced on every add
	consumed map[string]int
	stops    int
	logBuf   *logSink
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}), consumed: map[string]int{}, logBuf: &logSink{}}
}

func (r *recorder) add(e ev) {
	e.at = time.Now()
	r.mu.Lock()
	r.log = append(r.log, e)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) events() []ev {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ev(nil), r.log...)
}

func (r *recorder) hooks() Hooks {
	return Hooks{
		OnStart: func(name string, pid int) { r.add(ev{kind: "start", name: name, pid: pid}) },
		OnModuleDeath: func(name string, pid int, status string) {
			r.add(ev{kind: "death", name: name, pid: pid, status: status})
		},
		OnEngineDeath: func(pid int, status string) {
			r.add(ev{kind: "death", name: EngineName, pid: pid, status: status})
		},
		Reclaim:   func(name string, pid int) error { r.add(ev{kind: "reclaim", name: name, pid: pid}); return nil },
		OnBackoff: func(name string, d time.Duration) { r.add(ev{kind: "backoff", name: name, delay: d}) },
		OnBroken:  func(name string, n int) { r.add(ev{kind: "broken", name: name, pid: n}) },
		OnRefused: func(name string, pid int, line string) {
			r.add(ev{kind: "refused", name: name, pid: pid, status: line})
		},
		AfterStop: func() error { r.mu.Lock(); r.stops++; r.mu.Unlock(); return nil },
	}
}

// wait returns the next not yet returned event matching kind and name
// (name "" = any name).
func (r *recorder) wait(t testing.TB, kind, name string) ev {
	t.Helper()
	guard := time.NewTimer(20 * time.Second) // failure guard only
	defer guard.Stop()
	key := kind + "/" + name
	for {
		r.mu.Lock()
		n := 0
		for _, e := range r.log {
			if e.kind == kind && (name == "" || e.name == name) {
				if n == r.consumed[key] {
					r.consumed[key]++
					r.mu.Unlock()
					return e
				}
				n++
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-guard.C:
			t.Fatalf("timed out waiting for %s of %q; events: %+v", kind, name, r.events())
		}
	}
}

// logSink is a slog handler keeping every record (message plus attributes as
// "k=v" text) and feeding them to an optional channel.
type logSink struct {
	mu    sync.Mutex
	lines []string
	attrs []slog.Attr
	root  *logSink
	ch    chan string
}

func (h *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (h *logSink) WithGroup(string) slog.Handler            { return h }
func (h *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	root := h.root
	if root == nil {
		root = h
	}
	return &logSink{attrs: append(append([]slog.Attr(nil), h.attrs...), as...), root: root}
}
func (h *logSink) Handle(_ context.Context, r slog.Record) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s msg=%q", r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	root := h.root
	if root == nil {
		root = h
	}
	root.mu.Lock()
	root.lines = append(root.lines, b.String())
	ch := root.ch
	root.mu.Unlock()
	if ch != nil {
		ch <- b.String()
	}
	return nil
}

func (h *logSink) all() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.lines, "\n")
}

// running is a supervisor under test.
type running struct {
	s    *Supervisor
	rec  *recorder
	stop context.CancelFunc
	errc chan error
}

func startSup(t *testing.T, cfg *Config, rec *recorder, tweak func(*Options)) *running {
	t.Helper()
	opt := Options{Logger: slog.New(rec.logBuf), Hooks: rec.hooks()}
	if tweak != nil {
		tweak(&opt)
	}
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, rec: rec, stop: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		r.result(t)
		if t.Failed() {
			t.Logf("supervisor log:\n%s", rec.logBuf.all())
		}
	})
	return r
}

// result waits for Run to return (once; later calls return the same value).
func (r *running) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.errc:
		r.errc <- err
		return err
	case <-time.After(30 * time.Second): // failure guard only
		t.Fatal("Run did not return")
		return nil
	}
}

func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

func statusOf(t *testing.T, s *Supervisor, name string) ChildStatus {
	t.Helper()
	for _, c := range s.Status() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no child %q", name)
	return ChildStatus{}
}
