package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// idleModule is a module that does nothing in its ticks.
type idleModule struct{ spec module.Spec }

func (m *idleModule) Spec() module.Spec { return m.spec }
func (m *idleModule) Tick(*module.View, *module.Commands, time.Duration) error {
	return nil
}

// TestRefusedJoinFailsAtOnce: a hello the engine refuses returns from
// module.Run at once, not after Options.AttachTimeout (an invalid name or
// group used to be retried until it: 10 s by default, then the supervisor
// restarted the module, forever). Invalid hellos are permanent refusals
// (module.Refused: the process exits with layout.ExitRefused); the engine's
// admission refusals (here: the name is already connected) return at once
// too but are not permanent (exit 1, the supervisor's breaker stops them).
func TestRefusedJoinFailsAtOnce(t *testing.T) {
	r := newRunRig(t, host.Config{})
	s := newSchema()
	const patience = time.Minute // Options.AttachTimeout: what a retry would wait out
	run := func(ctx context.Context, spec module.Spec) error {
		return module.Run(ctx, &idleModule{spec: spec}, module.Options{
			Instance: r.inst, Registry: s.reg, AttachTimeout: patience, RejoinTimeout: -1,
		})
	}
	join := func(spec module.Spec) error {
		t.Helper()
		// The context's end tells a refusal returned at once from one
		// retried until the deadline (the test fails then, not later).
		ctx, cancel := context.WithTimeout(context.Background(), patience/2)
		defer cancel()
		err := run(ctx, spec)
		require.Error(t, err)
		require.NoError(t, ctx.Err(), "the refusal was retried instead of returned: %v", err)
		return err
	}

	for _, spec := range []module.Spec{
		{Name: "bad name!", Tier: module.Fast, Every: 1},
		{Name: "fine", Tier: module.Slow, Every: 6, Group: "bad group!"},
	} {
		err := join(spec)
		require.ErrorIs(t, err, ipc.ErrBadHello)
		require.True(t, module.Refused(err), "an invalid hello is a permanent refusal: %v", err)
		require.Contains(t, err.Error(), "must be 1..")
	}

	// A mask naming components beyond the schema: an invalid hello.
	err := join(module.Spec{Name: "widemask", Tier: module.Fast, Every: 1, Reads: world.MaskOf(40)})
	require.ErrorIs(t, err, ipc.ErrBadHello)
	require.True(t, module.Refused(err), "a mask beyond the schema is a permanent refusal: %v", err)
	require.Contains(t, err.Error(), "names component 40, beyond the schema's 2")

	// A module of the same name already connected: refused at once, but
	// not for good (the holder may die).
	ctx, stop := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- run(ctx, module.Spec{Name: "dup", Tier: module.Fast, Every: 1}) }()
	waitFor(t, "the first dup ticking", 10*time.Second, r.running("dup", 1))
	err = join(module.Spec{Name: "dup", Tier: module.Fast, Every: 1})
	require.ErrorIs(t, err, ipc.ErrRejected)
	require.False(t, module.Refused(err), "an admission refusal is not permanent: %v", err)
	// One line, the refusal said once (the engine's sentinel, the name).
	require.Equal(t, fmt.Sprintf(`attach to %q: module rejected by the engine: module "dup" is already connected (pid %d)`, r.inst, os.Getpid()), err.Error())
	stop()
	require.ErrorIs(t, <-first, context.Canceled)

	for _, m := range r.eng.Modules() {
		require.NotEqual(t, "bad name!", m.Name)
		require.NotEqual(t, "fine", m.Name)
	}
	r.requireAlive()
}

// upRun is a running `engine up` whose stdout (the summary) and stderr
// lines are collected.
type upRun struct {
	*recProc
	stdout, stderr *syncBuf
}

func startUp(t *testing.T, bin, cfg string) *upRun {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "engine"), "up", "--config", cfg)
	u := &upRun{stdout: &syncBuf{}, stderr: &syncBuf{}}
	cmd.Stdout = u.stdout
	errp, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	u.recProc = &recProc{cmd: cmd, lines: make(chan string, 1<<14)}
	go func() {
		sc := bufio.NewScanner(errp)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(u.stderr, sc.Text())
			select {
			case u.lines <- sc.Text():
			default: // nobody reads any more: drop
			}
		}
		close(u.lines)
	}()
	t.Cleanup(func() { u.kill() })
	return u
}

// logTime is the time= attribute of a slog text line.
func logTime(t *testing.T, line string) time.Time {
	t.Helper()
	f := strings.Fields(line)
	require.NotEmpty(t, f, line)
	v, ok := strings.CutPrefix(f[0], "time=")
	require.True(t, ok, line)
	at, err := time.Parse(time.RFC3339Nano, v)
	require.NoError(t, err, line)
	return at
}

// TestUpRefusedModuleNotRestarted: `engine up` with a module whose name the
// engine refuses (FDP_MODULE="bad name!" in its env). modrunner is refused
// at its first hello and exits at once with layout.ExitRefused; the
// supervisor logs the refusal once, with the module's own line, and never
// restarts it, while the engine and the other module run on; its summary
// shows the module as refused. (It used to wait 10 s, exit 1 and be
// restarted every ~10 s forever, below the breaker's threshold.)
func TestUpRefusedModuleNotRestarted(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "ref")
	cfg := fmt.Sprintf(`instance: %s
engine: {command: [engine, run, --entities, "1000", --churn, "0", --rate, "100", --status, "0"], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
  - {name: badname, command: [modrunner, telemetry], tier: fast, every: 1, env: {FDP_MODULE: "bad name!"}}
restart: {initial_backoff: 10ms, max_backoff: 200ms, multiplier: 2, reset_after: 5s}
breaker: {max_failures: 1000, window: 30s}
hang: {heartbeat_timeout: 2s, attach_timeout: 10s, engine_timeout: 2s, engine_start_timeout: 10s}
shutdown: {grace: 2s}
`, inst)
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	up := startUp(t, bin, path)

	started := up.waitLine(t, `msg="child started" child=badname`)
	refused := up.waitLine(t, `msg="module refused by the engine: not restarting" child=badname`)
	require.Contains(t, refused, fmt.Sprintf(`status="exit status %d"`, layout.ExitRefused))
	require.Contains(t, refused, "name must be 1..", "the module's own line says why")
	// At once: the engine answers a hello within milliseconds; a retried
	// refusal took the module's 10-second attach timeout.
	took := logTime(t, refused).Sub(logTime(t, started))
	require.Less(t, took, 5*time.Second, "the refusal took %v", took)
	t.Logf("refused %v after the module started", took)

	// The engine and the other module go on; the refused one stays down.
	tel := 0
	waitFor(t, "telemetry started", 20*time.Second, func() bool {
		for _, l := range strings.Split(up.stderr.String(), "\n") {
			if strings.Contains(l, `msg="child started" child=telemetry`) {
				tel = childPID(t, l)
			}
		}
		return tel != 0
	})
	f := latestFrameOf(inst)
	waitFor(t, "frames after the refusal", 20*time.Second, func() bool { return latestFrameOf(inst) >= f+100 })
	require.False(t, gone(tel), "telemetry runs on")

	// A modrunner started by hand under the refused name exits at once with
	// the refusal status too.
	cmd := exec.Command(filepath.Join(bin, "modrunner"), "telemetry")
	cmd.Env = append(os.Environ(), "FDP_INSTANCE="+inst, "FDP_MODULE=bad name!")
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	require.Equal(t, layout.ExitRefused, ee.ExitCode(), "%s", out)
	require.Less(t, time.Since(t0), 5*time.Second)
	require.Contains(t, string(out), "module refused by the engine")

	require.NoError(t, up.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, up.cmd.Wait(), "the refusal does not fail the run")
	for range up.lines { // the rest, until EOF
	}
	logs := up.stderr.String()
	require.Equal(t, 1, strings.Count(logs, `msg="child started" child=badname`), "never restarted")
	require.Equal(t, 1, strings.Count(logs, `msg="module refused by the engine: not restarting"`))
	require.NotContains(t, logs, `msg="child died" child=badname`)
	require.Equal(t, 1, strings.Count(logs, `msg="child started" child=telemetry`), "telemetry never died")

	sum := up.stdout.String()
	var row string
	for _, l := range strings.Split(sum, "\n") {
		if strings.HasPrefix(l, "badname ") {
			row = strings.Join(strings.Fields(l), " ")
		}
	}
	require.True(t, strings.HasPrefix(row, "badname refused 0 1 0 0 "), "summary row %q in:\n%s", row, sum)
	require.Contains(t, sum, "refused badname: ")
	requireNoSegments(t, inst)
}
