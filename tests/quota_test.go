package tests

import (
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// Per-module quotas (outside tester 2, findings A and B): one module that
// floods the shared event log, or fills the world with entities, hurts only
// itself.

// flooder publishes, every tick, 120 events of 4 KiB (type 77): 480 KiB a
// frame, half of the default 1 MiB event log. It prints "flood" per tick.
type flooder struct{ name string }

func (f *flooder) Spec() module.Spec { return module.Spec{Name: f.name, Tier: module.Fast, Every: 1} }

func (f *flooder) Tick(_ *module.View, c *module.Commands, _ time.Duration) error {
	p := make([]byte, 4096)
	for range 120 {
		c.Publish(77, p)
	}
	fmt.Println("flood")
	return c.Err()
}

// listener is a slow module (every 30 frames) that reads every event since
// its last tick and publishes one of its own (type 43) per tick. It prints
// "listen lost=<events lost so far> own=<own events seen> sent=<own events
// published>".
type listener struct {
	name            string
	lost, own, sent uint64
}

func (l *listener) Spec() module.Spec { return module.Spec{Name: l.name, Tier: module.Slow, Every: 30} }

func (l *listener) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	lost, err := v.Events(func(_, _ uint64, typ uint16, _ []byte) {
		if typ == 43 {
			l.own++
		}
	})
	if err != nil {
		return err
	}
	l.lost += lost
	c.Publish(43, []byte("mine"))
	l.sent++
	fmt.Printf("listen lost=%d own=%d sent=%d\n", l.lost, l.own, l.sent-1) // the last one is not played back yet
	return nil
}

// filler creates 2000 entities per tick and prints "fill" per tick.
type filler struct{ name string }

func (f *filler) Spec() module.Spec { return module.Spec{Name: f.name, Tier: module.Fast, Every: 1} }

func (f *filler) Tick(_ *module.View, c *module.Commands, _ time.Duration) error {
	for range 2000 {
		c.Create()
	}
	fmt.Println("fill")
	return c.Err()
}

// newQuotaRig is newHostileRig with 1 MiB rings (a flooder's batch is 480
// KiB) and the given quotas (0: the defaults, negative: none).
func newQuotaRig(t *testing.T, eventQuota, entityQuota int) *hostileRig {
	s := newSchema()
	w, err := world.New(s.reg, world.Config{ChunkCapacity: 64, MaxChunks: 64})
	require.NoError(t, err)
	inst := uniqueInstance(t, "qr")
	buf := &syncBuf{}
	eng, err := host.New(host.Config{Instance: inst, FastDeadline: 100 * time.Millisecond, RingBytes: 1 << 20,
		MaxEventBytesPerModule: eventQuota, MaxEntitiesPerModule: entityQuota,
		Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}, w, nil)
	require.NoError(t, err)
	t.Cleanup(func() { eng.Close() })
	return &hostileRig{t: t, s: s, eng: eng, inst: inst, log: buf}
}

// stepIdleUntil is hostileRig.stepUntil that runs a frame only when no
// module has a tick in progress (host.Engine.Idle).
func stepIdleUntil(r *hostileRig, what string, limit time.Duration, cond func() bool) {
	deadline := time.Now().Add(limit)
	for !cond() {
		for !r.eng.Idle() {
			require.True(r.t, time.Now().Before(deadline), "timed out waiting for %s (a tick in progress)", what)
			runtime.Gosched()
		}
		require.True(r.t, time.Now().Before(deadline), "timed out waiting for %s", what)
		r.eng.Step()
	}
}

// lastListen returns the numbers of the listener's last line.
func lastListen(out string) (lost, own, sent uint64, ok bool) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if rest, found := strings.CutPrefix(lines[i], "listen "); found {
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				n, _ := strconv.ParseUint(v, 10, 64)
				switch k {
				case "lost":
					lost = n
				case "own":
					own = n
				case "sent":
					sent = n
				}
			}
			return lost, own, sent, true
		}
	}
	return 0, 0, 0, false
}

// TestQuotaEventFlood: a module publishes 480 KiB of events per frame (the
// event log is 1 MiB). Without a quota a slow module reading every 30
// frames loses events (finding A); with the default quota (EventLogBytes/64
// per module per frame, host.EventBurstFrames frames of it in one frame) the
// flooder's excess events are rejected with event_quota, counted, and the
// listener loses nothing and sees each of its own events.
func TestQuotaEventFlood(t *testing.T) {
	hostileChild()
	run := func(t *testing.T, quota int) (lost, own, sent uint64, fm host.ModuleInfo) {
		r := newQuotaRig(t, quota, 0)
		lOut := r.spawn("TestQuotaEventFlood", "listener", "listener")
		fOut := r.spawn("TestQuotaEventFlood", "flooder", "flooder")
		r.stepUntil("both modules ticking", 10*time.Second, r.running("listener", "flooder"))
		// Five listener ticks (150 frames) with the flooder running. A
		// frame is run only once every tick is done, so that the listener
		// reads every 30 frames, as it would at the engine's rate, however
		// slowly its process runs under the race detector.
		start := strings.Count(lOut.String(), "listen ")
		stepIdleUntil(r, "5 listener ticks during the flood", 10*time.Second, func() bool {
			return strings.Count(lOut.String(), "listen ") >= start+5 && strings.Count(fOut.String(), "flood\n") >= 150
		})
		lost, own, sent, _ = lastListen(lOut.String())
		return lost, own, sent, r.module("flooder")
	}
	t.Run("no quota", func(t *testing.T) {
		lost, _, _, fm := run(t, -1)
		require.NotZero(t, lost, "the flood should wrap the log for the slow listener")
		require.Zero(t, fm.Stats.Rejected)
	})
	t.Run("default quota", func(t *testing.T) {
		lost, own, sent, fm := run(t, 0)
		require.Zero(t, lost, "the listener lost events")
		require.Equal(t, sent, own, "the listener saw each of its own events")
		rej := fm.PlaybackRejectReasons[world.RejectEventQuota.String()]
		require.NotZero(t, rej, "the flooder's excess is rejected")
		require.Equal(t, rej, fm.Stats.Rejected, "and for that reason only")
		require.NotZero(t, fm.Stats.Applied, "the events within its quota are applied")
	})
}

// TestQuotaEntityFill: a module creates 2000 entities per tick in a world
// of 4096. Without a quota the world fills and another module's creates
// are rejected (finding B); with the default quota (a quarter of the
// world's free capacity at start) the filler is capped at 1024 live entities (entity_quota), the
// other module's creates keep succeeding, and the filler's entities
// outlive it, still counted against its name.
func TestQuotaEntityFill(t *testing.T) {
	hostileChild()
	run := func(t *testing.T, quota int) *hostileRig {
		r := newQuotaRig(t, 0, quota)
		hOut := r.spawn("TestQuotaEntityFill", "honest", "honest")
		fOut := r.spawn("TestQuotaEntityFill", "filler", "filler")
		_ = hOut
		r.stepUntil("both modules ticking", 10*time.Second, r.running("honest", "filler"))
		r.stepUntil("30 fills", 10*time.Second, func() bool { return strings.Count(fOut.String(), "fill\n") >= 30 })
		start := r.module("honest").Stats.Runs
		r.stepUntil("30 more honest ticks", 10*time.Second, func() bool { return r.module("honest").Stats.Runs >= start+30 })
		r.eng.Step() // the last batches are played back
		return r
	}
	t.Run("no quota", func(t *testing.T) {
		r := run(t, -1)
		require.Equal(t, r.eng.World().MaxEntities(), r.eng.World().Count(), "the world is full")
		require.NotZero(t, r.module("honest").PlaybackRejectReasons[world.RejectWorldFull.String()])
	})
	t.Run("default quota", func(t *testing.T) {
		r := run(t, 0)
		quota := r.eng.World().MaxEntities() / 4
		require.Equal(t, quota, r.eng.Config().MaxEntitiesPerModule)
		fm, hm := r.module("filler"), r.module("honest")
		require.NotZero(t, fm.PlaybackRejectReasons[world.RejectEntityQuota.String()])
		require.Equal(t, fm.PlaybackRejectReasons[world.RejectEntityQuota.String()], fm.Stats.Rejected)
		owned := r.eng.ModuleEntities()
		require.Equal(t, quota, owned["filler"])
		require.Zero(t, hm.Stats.Rejected, "the honest module's creates all succeed: %v", hm.PlaybackRejectReasons)
		require.Equal(t, int(hm.Stats.Applied/2), owned["honest"], "one create and one set per tick")
		require.Equal(t, owned["honest"], hpCount(r.eng.World(), r.s, 7))

		// The filler dies: its entities stay and keep counting against its
		// name; the honest module goes on.
		require.NoError(t, syscall.Kill(fm.PID, syscall.SIGKILL))
		r.stepUntil("the filler's death", 10*time.Second, func() bool { return r.module("filler").State == host.StateDead })
		before := r.module("honest").Stats.Runs
		r.stepUntil("10 more honest ticks", 10*time.Second, func() bool { return r.module("honest").Stats.Runs >= before+10 })
		r.eng.Step()
		owned = r.eng.ModuleEntities()
		require.Equal(t, quota, owned["filler"])
		require.Zero(t, r.module("honest").Stats.Rejected)
		require.Equal(t, owned["filler"]+owned["honest"], r.eng.World().Count())
	})
}
