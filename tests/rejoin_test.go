package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Modules survive engine restarts: module.Run waits for the next engine of
// the instance and goes on in the same process with the same Module value.

// rejoinChild runs this process's rejoin-test child role ($FDP_REJOIN_CHILD)
// and exits; it returns when the process is not such a child.
func rejoinChild() {
	if os.Getenv("FDP_REJOIN_CHILD") != "stale" {
		return
	}
	s := newSoakSchema()
	m := &tickPrinter{block: os.Getenv("FDP_BLOCK") == "1", spec: module.Spec{Name: "stale", Tier: module.Slow, Every: 1,
		Reads: world.MaskOf(s.val, s.chk)}}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	err := module.Run(context.Background(), m, module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "module:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// tickPrinter prints "tick <frame>" for every tick it runs; with block it
// then blocks in its first tick (holding the tick's lease) until killed.
type tickPrinter struct {
	spec         module.Spec
	block, quiet bool
}

func (m *tickPrinter) Spec() module.Spec { return m.spec }

func (m *tickPrinter) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	if !m.quiet {
		_, _ = fmt.Fprintf(os.Stdout, "tick %d\n", v.Frame())
	}
	if m.block {
		select {} // killed here, its tick not done
	}
	return nil
}

// lineWriter collects the output of a child process line by line.
type lineWriter struct{ syncBuf }

// ticks returns the frames of the "tick <frame>" lines.
func (w *lineWriter) ticks() []uint64 {
	var out []uint64
	sc := bufio.NewScanner(strings.NewReader(w.String()))
	for sc.Scan() {
		if f, ok := strings.CutPrefix(sc.Text(), "tick "); ok {
			n, _ := strconv.ParseUint(f, 10, 64)
			out = append(out, n)
		}
	}
	return out
}

// TestRejoinIgnoresStaleTick is the regression test of "slot is not leased
// to this reader" on the first tick after a module joins: the engine keeps a
// module's slot and segment across module restarts, so a tick rung for an
// incarnation that died in the middle of it is still in the segment (tick
// frame newer than the done frame) when the next incarnation attaches, and
// its lease was reclaimed with the dead process. The new incarnation must
// not run it: its first tick is the first one the engine rings for it.
func TestRejoinIgnoresStaleTick(t *testing.T) {
	rejoinChild()
	s := newSoakSchema()
	w, _ := newSoakWorld(t, s, 0)
	inst := uniqueInstance(t, "st")
	eng, err := host.New(host.Config{Instance: inst, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	start := func(block bool) (*exec.Cmd, *lineWriter, *lineWriter) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRejoinIgnoresStaleTick$")
		cmd.Env = append(os.Environ(), "FDP_REJOIN_CHILD=stale", "FDP_INSTANCE="+inst, "FDP_BLOCK="+map[bool]string{true: "1", false: "0"}[block])
		out, errOut := &lineWriter{}, &lineWriter{}
		cmd.Stdout, cmd.Stderr = out, errOut
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd, out, errOut
	}
	admitted := func(pid int) func() bool {
		return func() bool { m, ok := moduleInfo(eng, "stale"); return ok && m.PID == pid && m.State != host.StateDead }
	}
	stepUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
			eng.Step()
			time.Sleep(time.Millisecond) // frame pacing while polling a condition, bounded
		}
	}

	// The first incarnation gets a leased snapshot and dies in its tick.
	a, aOut, _ := start(true)
	waitFor(t, "the first incarnation admitted", 10*time.Second, admitted(a.Process.Pid))
	stepUntil("the first incarnation's tick", func() bool { return len(aOut.ticks()) > 0 })
	stale := aOut.ticks()[0]
	require.NoError(t, a.Process.Kill())
	_ = a.Wait()

	// The next incarnation joins before the engine runs another frame: the
	// dead one's tick is still in the slot's segment.
	b, bOut, bErr := start(false)
	waitFor(t, "the next incarnation attached", 10*time.Second, func() bool { return strings.Contains(bErr.String(), "msg=attached") })
	require.True(t, admitted(b.Process.Pid)())
	stepUntil("the next incarnation's first tick", func() bool { return len(bOut.ticks()) > 0 })
	first := bOut.ticks()[0]
	require.Greater(t, first, stale, "the new incarnation ran a tick of the dead one")
	require.NotContains(t, bErr.String(), "no frame for tick", "the new incarnation ran the dead one's tick")
	require.NotContains(t, bErr.String(), "not leased")
	for i := 0; i < 20; i++ {
		eng.Step()
	}
	m, _ := moduleInfo(eng, "stale")
	require.Zero(t, m.Stats.Failures)
}

// ledgerBatch returns the ledger batch of module k in the latest frame of
// inst's world segment and the segment's creator pid (ok false when there
// is no readable frame).
func ledgerBatch(inst string, s *soakSchema, k int) (batch uint64, creator uint32, ok bool) {
	r, err := fsync.Attach(inst, fsync.AttachOptions{Name: "check", Registry: s.reg})
	if err != nil {
		return 0, 0, false
	}
	defer r.Close()
	f, err := r.Pin()
	if err != nil {
		return 0, 0, false
	}
	l, found := fsync.Get[Ledger](f, ledgerEntity(k, 0), s.ledger)
	if f.Release() != nil || !found {
		return 0, 0, false
	}
	return l.Batch, r.Layout().Header.CreatorPID, true
}

// TestModuleSurvivesEngineKills: a module process with in-memory state (the
// soak module's tick counter, which it writes into every ledger batch along
// with its pid) survives 3 engine SIGKILLs and restarts without restarting:
// after each restart the new engine applies its batches, their pid is the
// same and their counter goes on from where it was.
func TestModuleSurvivesEngineKills(t *testing.T) {
	maybeChild()
	inst := uniqueInstance(t, "rj")
	s := newSoakSchema()
	startEngine := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestModuleSurvivesEngineKills$")
		cmd.Env = append(os.Environ(), "FDP_TEST_CHILD=engine", "FDP_INSTANCE="+inst)
		cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	eng := startEngine()
	out := &countWriter{}
	mod := startSoakModule(t, "TestModuleSurvivesEngineKills", "soakmod", inst, 0, soakSpec{"fast-a", module.Fast, 1}, out)
	t.Cleanup(func() { _ = mod.Process.Kill(); _ = mod.Wait() })
	modStart, err := shm.ProcStartTime(mod.Process.Pid)
	require.NoError(t, err)
	pid := uint64(mod.Process.Pid)
	counter := func(b uint64) uint64 { return b & (1<<24 - 1) }
	appliedBy := func(enginePid int, after uint64) func() bool {
		return func() bool {
			b, creator, ok := ledgerBatch(inst, s, 0)
			return ok && int(creator) == enginePid && b>>24 == pid && counter(b) > after
		}
	}
	waitFor(t, "the module's batches applied", 30*time.Second, appliedBy(eng.Process.Pid, 10))

	for kill := 1; kill <= 3; kill++ {
		require.NoError(t, syscall.Kill(eng.Process.Pid, syscall.SIGKILL))
		_ = eng.Wait()
		last, _, ok := ledgerBatch(inst, s, 0) // the dead engine's last frame
		require.True(t, ok)
		require.Equal(t, pid, last>>24)
		eng = startEngine()
		waitFor(t, fmt.Sprintf("batches applied by engine %d after kill %d", kill+1, kill), 30*time.Second,
			appliedBy(eng.Process.Pid, counter(last)))
		require.True(t, shm.ProcessAlive(uint32(mod.Process.Pid), modStart), "the module process restarted or died")
	}
	checks, torn := out.result()
	require.Empty(t, torn, "torn frames (or other module output)")
	require.Greater(t, checks, 10)

	require.NoError(t, mod.Process.Kill())
	_ = mod.Wait()
	require.NoError(t, eng.Process.Signal(syscall.SIGTERM))
	require.NoError(t, eng.Wait())
	requireNoSegments(t, inst)
}

// TestRejoinGivesUp: with a short RejoinTimeout, Run returns ErrEngineGone
// when no engine comes back.
func TestRejoinGivesUp(t *testing.T) {
	s := newSoakSchema()
	w, _ := newSoakWorld(t, s, 0)
	inst := uniqueInstance(t, "gu")
	eng, err := host.New(host.Config{Instance: inst, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, nil)
	require.NoError(t, err)
	m := &tickPrinter{quiet: true, spec: module.Spec{Name: "gives-up", Tier: module.Fast, Every: 1, Reads: world.MaskOf(s.val)}}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- module.Run(ctx, m, module.Options{Instance: inst, Registry: s.reg, RejoinTimeout: 200 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	waitFor(t, "the module ticking", 10*time.Second, func() bool {
		eng.Step()
		m, ok := moduleInfo(eng, "gives-up")
		return ok && m.State == host.StateRunning
	})
	gone := time.Now()
	require.NoError(t, eng.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, module.ErrEngineGone)
		require.GreaterOrEqual(t, time.Since(gone), 200*time.Millisecond, "gave up before its RejoinTimeout")
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not give up")
	}
}
