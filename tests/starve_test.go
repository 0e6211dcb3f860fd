package tests

// Issue 13, point 2: snapshots never starve publishing. Twelve slow
// modules, each in a group of its own (they cannot share a snapshot), run
// ticks three frame periods long on the engine's default 10 slots: more
// snapshots are wanted at once than the pool can lease. Before the engine
// kept a slot for the next publish, 28-30% of the frames were published and
// nothing said so; now every frame is published, each snapshot refused is
// counted, logged and visible in the world segment (engine stat, engine
// dump), and every group still gets its ticks in turn.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

const starveEnv = "FDP_STARVE_CHILD"

// starveTickWork is how long a starving module's tick works: three frame
// periods at the engine's default 60 fps, so each group holds its snapshot
// across several frames and is due again at once.
const starveTickWork = 50 * time.Millisecond

// starveModule is a slow module whose tick reads its snapshot and works
// for starveTickWork.
type starveModule struct {
	s    *schema
	spec module.Spec
}

func (m *starveModule) Spec() module.Spec { return m.spec }

func (m *starveModule) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	if n := v.Count(m.spec.Reads); n == 0 {
		return fmt.Errorf("empty snapshot at frame %d", v.Frame())
	}
	time.Sleep(starveTickWork) // the tick's work: the engine goes on stepping meanwhile
	return nil
}

func runStarveModule(string) int {
	s := newSchema()
	spec := module.Spec{Name: os.Getenv("FDP_MODULE"), Tier: module.Slow, Every: 1, Reads: world.MaskOf(s.pos),
		Group: os.Getenv("FDP_GROUP")}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := module.Run(context.Background(), &starveModule{s: s, spec: spec},
		module.Options{Instance: os.Getenv("FDP_INSTANCE"), Registry: s.reg, Logger: log})
	if err != nil && !errors.Is(err, module.ErrEngineGone) {
		fmt.Fprintln(os.Stderr, "module:", err)
		return 1
	}
	return 0
}

// TestSnapshotsNeverStarvePublishing: 12 non-sharing slow groups holding
// snapshots on 10 slots. Every frame is published (no publish error, the
// world segment's publishes word equals the engine's frames); the
// snapshots refused are counted exactly (the world segment's word, as
// engine dump and engine stat read it, equals Engine.Bounds()) and logged
// at most once per second; every module ticks. The run lasts until every
// module has ticked minTicks times (at most maxFrames) and at least
// scarceFrames frames have run since the first refusal.
func TestSnapshotsNeverStarvePublishing(t *testing.T) {
	testutil.RunChild(starveEnv, runStarveModule)
	const groups = 12
	const minTicks = 8       // each module's ticks
	const scarceFrames = 120 // frames run since the first refusal (2 s at 60 fps)
	const maxFrames = 900    // frames since the first refusal before a starved group fails the test
	var logBuf syncBuf
	r := newRigConfig(t, 200, func(c *host.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	require.Equal(t, 10, r.eng.Config().Slots, "the engine's default slots")
	names := make([]string, groups)
	for i := range names {
		names[i] = fmt.Sprintf("starve-%02d", i)
		testutil.StartChild(t, testutil.ChildOptions{Test: "TestSnapshotsNeverStarvePublishing", Env: []string{
			starveEnv + "=slow", "FDP_MODULE=" + names[i], "FDP_GROUP=g" + names[i], "FDP_INSTANCE=" + r.inst}})
	}

	// The engine runs at its rate; the frame callback (the engine's
	// goroutine) sees every frame's publish result and ends the run once
	// every module has ticked minTicks times and snapshots were refused.
	var (
		frames    uint64
		failed    []string
		refusedAt uint64 // frames run when the first refusal was seen
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enough := make(chan struct{})
	var once sync.Once
	ran := make(chan error, 1)
	started := time.Now()
	go func() {
		ran <- r.eng.Run(ctx, func(st host.FrameStats) {
			frames++
			if st.PublishErr != nil && len(failed) < 10 {
				failed = append(failed, fmt.Sprintf("frame %d: %v", st.Frame, st.PublishErr))
			}
			if refusedAt == 0 && r.eng.Bounds().SnapshotsRefused > 0 {
				refusedAt = frames
			}
			if refusedAt == 0 || frames-refusedAt < scarceFrames {
				return
			}
			ticked := 0
			for _, m := range r.eng.Modules() {
				if strings.HasPrefix(m.Name, "starve-") && m.State != host.StateDead && m.Ticks >= minTicks {
					ticked++
				}
			}
			if ticked == groups || frames-refusedAt >= maxFrames {
				once.Do(func() { close(enough) })
			}
		})
	}()
	select {
	case <-enough:
	case <-time.After(90 * time.Second):
		cancel()
		<-ran
		t.Fatalf("timed out: refused %d, modules %+v", r.eng.Bounds().SnapshotsRefused, r.eng.Modules())
	}
	cancel()
	require.NoError(t, <-ran)
	elapsed := time.Since(started)

	// Every frame was published.
	require.Empty(t, failed, "frames not published")
	require.Equal(t, r.eng.Frames, frames, "the callback saw every frame")
	b, err := os.ReadFile(r.eng.WorldPath())
	require.NoError(t, err)
	rep, err := inspect.Inspect(b)
	require.NoError(t, err)
	require.Equal(t, frames, rep.World.Stats.Publishes, "the world segment's publishes word counts every frame")
	require.Zero(t, rep.World.Stats.Skipped, "no publish found every slot taken")
	require.Equal(t, r.eng.Frame(), rep.World.Latest.Frame, "the last frame is the latest published")

	// Demand exceeded the pool, and each refusal is counted once, in the
	// engine and in the world segment (dump and stat read the same word).
	bounds := r.eng.Bounds()
	require.Positive(t, bounds.SnapshotsRefused, "12 groups on 10 slots: some snapshots were refused")
	require.Equal(t, bounds.SnapshotsRefused, layout.Load64(b, layout.OffWStatSnapRefused))
	require.Equal(t, bounds.SnapshotsRefused, rep.World.Stats.SnapshotsRefused, "engine dump")
	sample, err := inspect.TakeSample(b, nil, time.Now(), inspect.Options{})
	require.NoError(t, err)
	require.Equal(t, bounds.SnapshotsRefused, inspect.Rates(sample, sample).SnapshotsRefused, "engine stat")
	require.GreaterOrEqual(t, r.eng.Publisher().SnapshotsNoSlot, bounds.SnapshotsRefused,
		"every refusal is a snapshot that found no free slot")

	// Logged, at most once per second.
	logged := strings.Count(logBuf.String(), "snapshot refused for a due group")
	require.Positive(t, logged, "refusals are logged")
	require.LessOrEqual(t, logged, int(elapsed/time.Second)+1, "at most once per second")

	// No group starved: every module ticked, none failed.
	var skipped uint64
	for _, name := range names {
		m := r.module(name)
		require.GreaterOrEqual(t, m.Ticks, uint64(minTicks), "%s ticks in %d frames since the first refusal: starved",
			name, frames-refusedAt)
		require.Zero(t, m.Stats.Failures, "%s failures", name)
		require.Equal(t, "group:g"+name, m.Group, "%s shares no group", name)
		skipped += m.Stats.Skipped
	}
	t.Logf("%d frames in %v, all published; %d snapshots, %d refused (%d tries without a free slot), logged %d times; skipped %d",
		frames, elapsed.Round(time.Millisecond), r.eng.Snapshots, bounds.SnapshotsRefused,
		r.eng.Publisher().SnapshotsNoSlot, logged, skipped)
}
