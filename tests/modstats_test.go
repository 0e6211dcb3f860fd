package tests

// Per-module statistics seen from outside (issue 12, point 4): the shipped
// `engine run` with a real module process whose ticks fail a known number of
// times and send known good and bad commands; `engine dump --json` and
// `engine stat --json` of the module's segment show exactly those figures,
// and the engine's summary shows the snapshot pool's reuse.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const (
	statsEnv = "FDP_MODSTATS_CHILD"
	// statsGood ticks succeed, then statsFailed fail in a row (the
	// breaker's default MaxFailures: it opens), then the probe tick the
	// breaker lets through after its reset blocks until the test ends.
	statsGood   = 7
	statsFailed = 5
	statsTick   = 20 * time.Millisecond // every tick's work
)

// statsModule is the module of TestModuleStatsBlackBox.
type statsModule struct {
	ticks  int
	events uint64 // events (and created notices) of the ticks that succeeded: their batches were committed
}

func (m *statsModule) Spec() module.Spec {
	return module.Spec{Tier: module.Slow, Every: 2, Group: "solo", MaxRuntime: time.Minute}
}

func (m *statsModule) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	m.ticks++
	if m.ticks > statsGood+statsFailed {
		// What the engine rejected of the module's batches, as the SDK
		// reads it from the module's own segment (View.Rejections).
		r, err := v.Rejections()
		fmt.Printf("blocking frame=%d events=%d rejections=%v err=%v\n", v.Frame(), m.events, r, err)
		time.Sleep(time.Hour) // holds its tick until the test ends
	}
	var n uint64
	if _, err := v.Events(func(uint64, uint64, uint16, []byte) { n++ }); err != nil {
		return err
	}
	// The engine's notices of this module's creates are delivered too,
	// through Created (the only module: every notice is its own).
	n += uint64(len(v.Created()))
	time.Sleep(statsTick) // the tick's work, not a synchronisation
	// One good command and three bad ones: entity 0 is never alive
	// (stale_entity), and event types from 0xFF00 are the engine's
	// (reserved_event_type).
	c.Create()
	c.Destroy(world.Entity(0))
	c.Publish(layout.SystemEventFirst, []byte("12345678"))
	c.Publish(layout.SystemEventFirst+1, []byte("12345678"))
	if m.ticks > statsGood {
		fmt.Printf("tick n=%d failed\n", m.ticks)
		return errors.New("this tick fails")
	}
	m.events += n
	fmt.Printf("tick n=%d ok events=%d\n", m.ticks, m.events)
	return nil
}

func statsChild(string) int {
	s, err := demo.NewSchema()
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	err = module.Run(context.Background(), &statsModule{}, module.Options{Instance: os.Getenv("FDP_INSTANCE"),
		Name: os.Getenv("FDP_MODULE"), Registry: s.Reg, Logger: log})
	fmt.Println("EXIT", err)
	return 0
}

// dumpStats runs `engine dump --json <inst> mod.0` and returns the module
// report (nil stats when the engine has not written the block).
func dumpStats(t *testing.T, bin, inst string) *inspect.ModuleReport {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "engine"), "dump", "--json", inst, "mod.0").Output()
	require.NoError(t, err, "engine dump: %s", out)
	var r inspect.Report
	require.NoError(t, json.Unmarshal(out, &r), "%s", out)
	require.NotNil(t, r.Module, "%s", out)
	return r.Module
}

// TestModuleStatsBlackBox: `engine run` (the shipped binary) and a module
// process whose first 7 ticks succeed and next 5 fail, each sending one
// create, a destroy of a dead entity and two events of reserved types, each
// lasting 20 ms; the breaker opens on the 5th failure and its probe tick
// blocks. `engine dump --json` of the module's segment shows: 13 runs, 12
// ticks seen done with p50 >= 20 ms and p99 matching the histogram, 5
// failures, the breaker open with one trip, 7 commands applied and 21
// rejected (stale_entity 7, reserved_event_type 14), 13 snapshots, the
// events the module's committed ticks read; the module's own
// View.Rejections shows the same rejections by reason; `engine stat --json`
// shows the same block; the engine's summary at exit shows the pool reuse rate.
func TestModuleStatsBlackBox(t *testing.T) {
	testutil.RunChild(statsEnv, statsChild)
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "ms")
	eng := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "1000", "--churn", "200",
		"--rate", "100", "--status", "0")
	var stdout bytes.Buffer
	eng.Stdout = &stdout
	stderr, err := eng.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, eng.Start())
	engLog := &syncBuf{}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(engLog, sc.Text())
		}
	}()
	t.Cleanup(func() {
		if eng.ProcessState == nil {
			_ = eng.Process.Kill()
			_ = eng.Wait()
		}
	})
	waitFor(t, "the engine's first frame", 20*time.Second, func() bool { return latestFrameOf(inst) >= 1 })

	c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestModuleStatsBlackBox",
		Env: []string{statsEnv + "=stats", "FDP_INSTANCE=" + inst, "FDP_MODULE=stats"}})
	line, ok := c.WaitLine(func(l string) bool { return strings.HasPrefix(l, "blocking ") }, 30*time.Second)
	require.True(t, ok, "the probe tick; module lines %q\nengine log:\n%s", c.Lines(), engLog.String())
	var blockFrame, events uint64
	_, err = fmt.Sscanf(line, "blocking frame=%d events=%d", &blockFrame, &events)
	require.NoError(t, err, line)
	require.Len(t, c.Lines(), statsGood+statsFailed+1, "%q", c.Lines())
	// The module itself can ask why its batches were rejected: the 7
	// committed ticks' bad commands, by reason (the failed ticks' batches
	// were never played back).
	require.Contains(t, line, " rejections=rejected 21 (stale_entity 7, reserved_event_type 14) of 28 err=<nil>", line)

	// The engine writes the block at the end of the frame that rang the
	// probe tick: poll until it shows it.
	var m *inspect.ModuleReport
	waitFor(t, "the probe tick in the statistics block", 10*time.Second, func() bool {
		m = dumpStats(t, bin, inst)
		return m.Stats != nil && m.Stats.Runs == statsGood+statsFailed+1
	})
	s := m.Stats
	require.Equal(t, "stats", m.Name)
	require.True(t, s.Stable)
	require.Equal(t, uint32(layout.ModStatsVersion), s.Version)
	require.Equal(t, "breaker-open", s.State, "the breaker opened on the 5th failure; its probe is running")
	require.Equal(t, uint64(statsFailed), s.Failures)
	require.Equal(t, uint32(statsFailed), s.FailStreak)
	require.Equal(t, uint64(1), s.BreakerTrips)
	require.Positive(t, s.BreakerOpenUntilNano)
	require.Zero(t, s.Late, "slow ticks are never late")
	require.Zero(t, s.Overruns)
	require.Equal(t, uint64(statsGood), s.Applied, "the creates of the ticks that succeeded")
	require.Equal(t, []inspect.RejectCount{
		{Reason: "stale_entity", Code: int(world.RejectStaleEntity), Count: statsGood},
		{Reason: "reserved_event_type", Code: int(world.RejectReservedEvent), Count: 2 * statsGood},
	}, s.RejectedByReason, "the batches of failed ticks are never played")
	require.Equal(t, uint64(3*statsGood), s.Rejected)
	require.Equal(t, uint64(statsGood+statsFailed+1), s.Snapshots)
	require.Zero(t, s.CatchUps, "a solo module")
	require.Equal(t, blockFrame, s.LastTickFrame)
	require.Equal(t, uint64(statsGood+statsFailed), s.Ticks, "every tick but the running probe seen done")
	require.GreaterOrEqual(t, s.TickP50Nano, uint64(statsTick))
	require.GreaterOrEqual(t, s.TickP99Nano, s.TickP50Nano)
	require.GreaterOrEqual(t, s.TickMaxNano, s.TickP99Nano)
	require.GreaterOrEqual(t, s.TickMeanNano, uint64(statsTick))
	var hist [layout.TickBuckets]uint64
	var inHist uint64
	for _, b := range s.TickHistogram {
		i := layout.TickBucket(b.UpperNano - 1)
		require.Equal(t, b.UpperNano, uint64(1)<<uint(i), "bucket bound %d", b.UpperNano)
		hist[i] = b.Count
		inHist += b.Count
	}
	require.Equal(t, s.Ticks, inHist)
	require.Equal(t, layout.TickPercentile(&hist, s.TickMaxNano, 99), s.TickP99Nano)
	require.GreaterOrEqual(t, s.LagFrames, uint64(2), "a 20 ms tick at 100 frames per second is seen done 2 frames later at least")
	require.GreaterOrEqual(t, s.LagMaxFrames, s.LagFrames)
	require.Equal(t, events, s.EventsDelivered, "the events of the committed ticks")
	require.Positive(t, s.EventsDelivered, "the churn's events and the created notices")
	require.Zero(t, s.EventsLost)
	require.Equal(t, uint64(1), s.Joins)
	require.Zero(t, s.Deaths)

	// The text dump shows them too.
	out, err := exec.Command(filepath.Join(bin, "engine"), "dump", inst, "mod.0").Output()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "state breaker-open")
	require.Contains(t, string(out), fmt.Sprintf("commands   applied %d   rejected %d (stale_entity %d, reserved_event_type %d)",
		statsGood, 3*statsGood, statsGood, 2*statsGood))

	// `engine stat --json`: the same block, per module.
	out, err = exec.Command(filepath.Join(bin, "engine"), "stat", "--json", "--count", "1", "--interval", "50ms", inst).Output()
	require.NoError(t, err, "%s", out)
	var line1 inspect.StatLine
	require.NoError(t, json.Unmarshal(out, &line1), "%s", out)
	require.Len(t, line1.Modules, 1, "%s", out)
	require.Equal(t, "stats", line1.Modules[0].Name)
	require.True(t, line1.Modules[0].Alive)
	// While the probe runs the module is due every 2 frames and busy: only
	// its skipped count (and the frame of the block's write) moves.
	st := line1.Modules[0].Stats
	require.NotNil(t, st)
	require.GreaterOrEqual(t, st.Skipped, s.Skipped, "skipped only grows")
	require.GreaterOrEqual(t, st.Frame, s.Frame)
	same := *st
	same.Skipped, same.Frame = s.Skipped, s.Frame
	require.Equal(t, *s, same, "nothing else changed while the probe runs")

	// The summary at exit: the module's figures and the pool's reuse.
	require.NoError(t, eng.Process.Signal(syscall.SIGTERM))
	require.NoError(t, eng.Wait())
	sum := stdout.String()
	require.Contains(t, sum, "pool reuse ", sum)
	require.Regexp(t, `pool reuse \d+ of \d+ \(\d+%\)`, sum)
	require.Regexp(t, fmt.Sprintf(`module stats +slow every 2 +breaker-open +runs %d +late 0 +failures %d +applied %d +rejected %d`,
		statsGood+statsFailed+1, statsFailed, statsGood, 3*statsGood), sum)
	require.Contains(t, sum, fmt.Sprintf("module stats      ticks %d p50 ", statsGood+statsFailed), sum)
	require.Contains(t, sum, "rejected by reason: reserved_event_type 14, stale_entity 7", sum)
}
