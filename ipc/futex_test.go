package ipc

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fdp-engine/fdp/layout"
)

// futexStop in the tick frame word tells a pong child to exit.
const futexStop = ^uint64(0)

func futexBells(b []byte) (tick, done *Doorbell, err error) {
	if tick, err = NewDoorbell(b, layout.OffMTick, layout.OffMTickNeedWake); err != nil {
		return nil, nil, err
	}
	done, err = NewDoorbell(b, layout.OffMDone, layout.OffMDoneNeedWake)
	return tick, done, err
}

// futexChildWaiter waits once on the tick bell (no spinning: it must sleep in
// the kernel), reports the value it saw in the done frame and rings done.
func futexChildWaiter() error {
	m, err := ringOpenModule(os.Getenv("FDP_RING_PATH"))
	if err != nil {
		return err
	}
	tick, done, err := futexBells(m.B)
	if err != nil {
		return err
	}
	v, err := tick.Wait(0, 0, 20*time.Second)
	if err != nil {
		return err
	}
	layout.Store64(m.B, layout.OffMDoneFrame, uint64(v))
	_, err = done.Ring()
	return err
}

// futexChildPong answers every tick: it echoes the tick frame into the done
// frame, stores its wake latency (CLOCK_MONOTONIC now minus the tick stamp)
// and its wake statistics into the module segment's wake words and rings
// done. It spins FDP_FUTEX_SPIN times before sleeping and polls for
// FDP_FUTEX_WARM after a pre-wake.
func futexChildPong() error {
	m, err := ringOpenModule(os.Getenv("FDP_RING_PATH"))
	if err != nil {
		return err
	}
	spin, _ := strconv.Atoi(os.Getenv("FDP_FUTEX_SPIN"))
	warm, _ := time.ParseDuration(os.Getenv("FDP_FUTEX_WARM"))
	tick, done, err := futexBells(m.B)
	if err != nil {
		return err
	}
	tick.SetWarmSpin(warm)
	var last uint32 // the parent rings tick i in round i: the word starts at 0
	for {
		v, err := tick.Wait(last, spin, 20*time.Second)
		if err != nil {
			return err
		}
		now := MonoNanos()
		last = v
		frame := layout.Load64(m.B, layout.OffMTickFrame)
		if frame == futexStop {
			return nil
		}
		ws := tick.WakeStats()
		layout.Store64(m.B, layout.OffMWakeNanos, now-layout.Load64(m.B, layout.OffMTickStamp))
		layout.Store64(m.B, layout.OffMWakeWarm, ws.Warm)
		layout.Store64(m.B, layout.OffMWakeCold, ws.Cold)
		layout.Store64(m.B, layout.OffMDoneFrame, frame)
		if _, err := done.Ring(); err != nil {
			return err
		}
	}
}

// futexPrewakeSleeper waits until the child announced its sleep on the tick
// bell and pre-wakes it (retrying while it is between the announcement and
// FUTEX_WAIT); with untilPolling it then waits until the child polls
// (need-wake cleared by its warm spin, which must outlast the wait). It
// returns false if the child did not get there by the deadline.
func futexPrewakeSleeper(tb testing.TB, b []byte, tick *Doorbell, untilPolling bool, deadline time.Time) bool {
	tb.Helper()
	for layout.Load32(b, layout.OffMTickNeedWake) == 0 {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	for {
		ok, err := tick.Prewake()
		require.NoError(tb, err)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	for untilPolling && layout.Load32(b, layout.OffMTickNeedWake) != 0 {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// futexAnnounced waits until the child stored its need-wake on the tick
// bell (it is about to sleep, or asleep); false at the deadline.
func futexAnnounced(b []byte, deadline time.Time) bool {
	for layout.Load32(b, layout.OffMTickNeedWake) == 0 {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

func TestFutexTimeout(t *testing.T) {
	b := ringAnonRegion(t, 4096) // any mapped, aligned memory
	w := layout.Word32Ptr(b, layout.RingOffFlags)
	layout.Store32(b, layout.RingOffFlags, 7)

	for _, timeout := range []time.Duration{time.Millisecond, 30 * time.Millisecond} {
		start := time.Now()
		err := FutexWait(w, 7, timeout)
		el := time.Since(start)
		require.ErrorIs(t, err, ErrTimeout)
		require.GreaterOrEqual(t, el, timeout)
	}
	require.ErrorIs(t, FutexWait(w, 7, 0), ErrTimeout)
	// A word that already differs returns at once.
	start := time.Now()
	require.NoError(t, FutexWait(w, 8, 10*time.Second))
	require.Less(t, time.Since(start), 5*time.Second)
	n, err := FutexWake(w, 1)
	require.NoError(t, err)
	require.Zero(t, n, "nobody waits")

	d, err := NewDoorbell(b, layout.RingOffFlags, layout.RingOffFlags+4)
	require.NoError(t, err)
	start = time.Now()
	v, err := d.Wait(7, 1000, 25*time.Millisecond)
	el := time.Since(start)
	require.ErrorIs(t, err, ErrTimeout)
	require.Equal(t, uint32(7), v)
	require.GreaterOrEqual(t, el, 25*time.Millisecond)
	require.Zero(t, layout.Load32(b, layout.RingOffFlags+4), "need-wake cleared after the wait")
	// A rung bell is seen without sleeping, and Ring without a sleeper makes no wake call.
	v, err = d.Ring()
	require.NoError(t, err)
	require.Equal(t, uint32(8), v)
	v, err = d.Wait(7, 0, time.Second)
	require.NoError(t, err)
	require.Equal(t, uint32(8), v)
}

// TestDoorbellPrewake: a pre-wake reaches only a sleeping waiter; without a
// warm spin the waiter goes straight back to FUTEX_WAIT; with one it polls
// (need-wake clear), sees the following ring without being woken (a warm
// wake), gives up polling after the warm spin, and never waits past its
// own timeout.
func TestDoorbellPrewake(t *testing.T) {
	b := ringAnonRegion(t, 4096)
	const wordOff, needOff = layout.RingOffFlags, layout.RingOffFlags + 4
	type result struct {
		v   uint32
		err error
		ws  WakeStats
	}
	start := func(d *Doorbell, last uint32, timeout time.Duration) chan result {
		ch := make(chan result, 1)
		go func() {
			v, err := d.Wait(last, 0, timeout)
			ch <- result{v, err, d.WakeStats()}
		}()
		return ch
	}
	deadline := time.Now().Add(15 * time.Second)
	prewake := func(d *Doorbell) {
		for {
			ok, err := d.Prewake()
			require.NoError(t, err)
			if ok {
				return
			}
			require.True(t, time.Now().Before(deadline), "waiter never slept")
			runtime.Gosched()
		}
	}
	needIs := func(want uint32) {
		for layout.Load32(b, needOff) != want {
			require.True(t, time.Now().Before(deadline), "need-wake never became %d", want)
			runtime.Gosched()
		}
	}

	d, err := NewDoorbell(b, wordOff, needOff)
	require.NoError(t, err)
	ok, err := d.Prewake()
	require.NoError(t, err)
	require.False(t, ok, "nobody sleeps: no wake")

	// No warm spin: woken without a ring, the waiter sleeps again (a second
	// pre-wake finds it in FUTEX_WAIT).
	ch := start(d, d.Load(), 20*time.Second)
	prewake(d)
	prewake(d)
	_, err = d.Ring()
	require.NoError(t, err)
	r := <-ch
	require.NoError(t, r.err)
	require.Equal(t, uint32(1), r.v)
	require.Equal(t, uint64(1), r.ws.Warm+r.ws.Cold)

	// Warm spin: the waiter polls with need-wake clear; the ring is seen warm.
	d, err = NewDoorbell(b, wordOff, needOff)
	require.NoError(t, err)
	d.SetWarmSpin(20 * time.Second)
	ch = start(d, d.Load(), 30*time.Second)
	prewake(d)
	needIs(0)
	_, err = d.Ring()
	require.NoError(t, err)
	r = <-ch
	require.NoError(t, r.err)
	require.Equal(t, uint32(2), r.v)
	require.Equal(t, WakeStats{Warm: 1}, r.ws)

	// A short warm spin ends: the waiter sleeps in FUTEX_WAIT again (only
	// a sleeper can be pre-woken; Prewake returns false while it polls).
	d, err = NewDoorbell(b, wordOff, needOff)
	require.NoError(t, err)
	d.SetWarmSpin(20 * time.Millisecond)
	ch = start(d, d.Load(), 30*time.Second)
	prewake(d)
	prewake(d)
	_, err = d.Ring()
	require.NoError(t, err)
	r = <-ch
	require.NoError(t, r.err)
	require.Equal(t, uint32(3), r.v)

	// The warm spin never outlasts the Wait's own timeout.
	d, err = NewDoorbell(b, wordOff, needOff)
	require.NoError(t, err)
	d.SetWarmSpin(time.Minute)
	t0 := time.Now()
	ch = start(d, d.Load(), 100*time.Millisecond)
	prewake(d)
	r = <-ch
	require.ErrorIs(t, r.err, ErrTimeout)
	require.Equal(t, uint32(3), r.v)
	require.Less(t, time.Since(t0), 30*time.Second)
	require.GreaterOrEqual(t, time.Since(t0), 100*time.Millisecond)
	require.Zero(t, layout.Load32(b, needOff), "need-wake cleared after the wait")
}

func TestDoorbellRejectsBadWords(t *testing.T) {
	b := ringAnonRegion(t, 4096)
	for _, c := range [][2]int{{-4, 0}, {0, 0}, {2, 8}, {0, 6}, {len(b) - 2, 0}, {0, len(b)}} {
		_, err := NewDoorbell(b, c[0], c[1])
		require.Error(t, err, "%v", c)
	}
	_, err := NewDoorbell(b[1:], 4, 8)
	require.Error(t, err, "misaligned segment")
}

// TestFutexCrossProcessWake: a child sleeps in FUTEX_WAIT on the tick bell's
// need-wake word of a shared segment; the parent proves it is queued there (a
// shared FUTEX_WAKE on the same page finds exactly one waiter, which a
// _PRIVATE wait would not be), then rings; the child sees the ring and rings
// back.
func TestFutexCrossProcessWake(t *testing.T) {
	path, m := ringCreateModule(t, 4096)
	tick, done, err := futexBells(m.B)
	require.NoError(t, err)
	child := ringStartChild(t, "futex-waiter", "FDP_RING_PATH="+path)
	deadline := time.Now().Add(15 * time.Second)
	for layout.Load32(m.B, layout.OffMTickNeedWake) != 1 {
		require.True(t, time.Now().Before(deadline), "child never announced its sleep:\n%s", child.out.String())
		time.Sleep(100 * time.Microsecond) // polling interval of a condition loop
	}
	addr := layout.Word32Ptr(m.B, layout.OffMTickNeedWake)
	for {
		n, err := FutexWake(addr, 1) // spurious wake: nothing changed, the child sleeps again
		require.NoError(t, err)
		if n == 1 {
			break
		}
		require.True(t, time.Now().Before(deadline), "child never slept in FUTEX_WAIT on the shared word")
		time.Sleep(100 * time.Microsecond)
	}
	v, err := tick.Ring()
	require.NoError(t, err)
	require.Equal(t, uint32(1), v)
	got, err := done.Wait(0, 0, 15*time.Second)
	require.NoError(t, err, "child output:\n%s", child.out.String())
	require.Equal(t, uint32(1), got)
	require.Equal(t, uint64(1), layout.Load64(m.B, layout.OffMDoneFrame), "child saw the tick value")
	child.wait(t)
}

// TestFutexPingPong runs many tick/done round trips between two processes,
// with and without spinning on both sides, and with a pre-wake before every
// ring, checking that no ring is lost or duplicated and that the child
// counted each wake the way it happened: from FUTEX_WAIT without spinning,
// while polling after a pre-wake.
func TestFutexPingPong(t *testing.T) {
	cases := []struct {
		name    string
		spin    int
		prewake bool
	}{{"sleep", 0, false}, {"spin2000", 2000, false}, {"prewake", 0, true}}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			path, m := ringCreateModule(t, 4096)
			tick, done, err := futexBells(m.B)
			require.NoError(t, err)
			warm := "0s"
			if cs.prewake {
				warm = "20s" // the ring always comes while the child polls
			}
			child := ringStartChild(t, "futex-pong", "FDP_RING_PATH="+path, fmt.Sprintf("FDP_FUTEX_SPIN=%d", cs.spin), "FDP_FUTEX_WARM="+warm)
			last := done.Load()
			const rounds = 500
			for i := uint64(1); i <= rounds; i++ {
				if cs.prewake {
					require.True(t, futexPrewakeSleeper(t, m.B, tick, true, time.Now().Add(15*time.Second)),
						"round %d: child never slept or never polled after the pre-wake:\n%s", i, child.out.String())
				} else if cs.spin == 0 {
					// Ring once the child announced its sleep: under load a
					// ring sent at once found a child not yet back at its
					// wait (counted warm) in up to half the rounds. The
					// ring can still land between the announcement and
					// FUTEX_WAIT (warm), rarely.
					require.True(t, futexAnnounced(m.B, time.Now().Add(15*time.Second)),
						"round %d: the child never announced its sleep:\n%s", i, child.out.String())
				}
				layout.Store64(m.B, layout.OffMTickStamp, MonoNanos())
				layout.Store64(m.B, layout.OffMTickFrame, i)
				_, err := tick.Ring()
				require.NoError(t, err)
				v, err := done.Wait(last, cs.spin, 15*time.Second)
				require.NoError(t, err, "round %d, child output:\n%s", i, child.out.String())
				require.Equal(t, last+1, v, "exactly one done ring per tick")
				last = v
				require.Equal(t, i, layout.Load64(m.B, layout.OffMDoneFrame))
				require.Equal(t, i, layout.Load64(m.B, layout.OffMWakeWarm)+layout.Load64(m.B, layout.OffMWakeCold), "every wake counted once")
			}
			warmN, coldN := layout.Load64(m.B, layout.OffMWakeWarm), layout.Load64(m.B, layout.OffMWakeCold)
			switch {
			case cs.prewake:
				require.Equal(t, uint64(rounds), warmN, "every ring reached a child polling after its pre-wake")
			case cs.spin == 0:
				// The ring can land between the child's need-wake store and
				// its check (warm), but most find it asleep.
				require.Greater(t, coldN, uint64(rounds/2))
			}
			layout.Store64(m.B, layout.OffMTickFrame, futexStop)
			_, err = tick.Ring()
			require.NoError(t, err)
			child.wait(t)
			require.Equal(t, uint32(rounds+1), tick.Load())
		})
	}
}

// BenchmarkFutexWakeLatency measures the cross-process tick wake latency:
// the parent stamps CLOCK_MONOTONIC into the tick stamp word and rings the
// tick bell; the child stores now-stamp when its Wait returns. Modes:
//
//   - sleeping: the child is asleep in FUTEX_WAIT (the parent waits for its
//     need-wake announcement, then 30 µs more), no pre-wake: the kernel and
//     (on a VM) the hypervisor wake its idle CPU;
//   - prewoken: the engine's tick path for fast modules: the parent
//     pre-wakes the sleeping child, then rings 200 µs later (the engine
//     pre-wakes before it publishes the frame); the child's warm spin is 1 ms.
//     A child that is not polling yet when the ring comes counts as cold,
//     with its whole wake-up in the latency;
//   - spinning: the child polls the word (20000 loads before sleeping).
//
// The three are logged as a table at the end, with prewoken and spinning as
// ratios of the sleeping p50 measured in the same run.
func BenchmarkFutexWakeLatency(b *testing.B) {
	type row struct {
		p50, p99 time.Duration
		warm     float64
	}
	rows := map[string]row{}
	modes := []struct {
		name       string
		spin       int
		warm       string
		prewake    bool
		lead, idle time.Duration
	}{
		{"sleeping", 0, "0s", false, 0, 30 * time.Microsecond},
		{"prewoken", 0, "1ms", true, 200 * time.Microsecond, 0},
		{"spinning", 20000, "0s", false, 0, 0},
	}
	for _, md := range modes {
		b.Run(md.name, func(b *testing.B) {
			path, m := ringCreateModule(b, 4096)
			tick, done, err := futexBells(m.B)
			require.NoError(b, err)
			child := ringStartChild(b, "futex-pong", "FDP_RING_PATH="+path, fmt.Sprintf("FDP_FUTEX_SPIN=%d", md.spin), "FDP_FUTEX_WARM="+md.warm)
			lat := make([]time.Duration, 0, b.N)
			last := done.Load()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				switch {
				case md.prewake:
					if !futexPrewakeSleeper(b, m.B, tick, false, time.Now().Add(15*time.Second)) {
						b.Fatalf("round %d: child never slept:\n%s", i, child.out.String())
					}
					for t0 := time.Now(); time.Since(t0) < md.lead; {
					}
				case md.idle > 0:
					// Ring only once the child announced its sleep, and give
					// it time to get into FUTEX_WAIT: this measures a real
					// kernel wake-up, not the check just before sleeping.
					for layout.Load32(m.B, layout.OffMTickNeedWake) == 0 {
						runtime.Gosched()
					}
					for t0 := time.Now(); time.Since(t0) < md.idle; {
					}
				}
				layout.Store64(m.B, layout.OffMTickStamp, MonoNanos())
				layout.Store64(m.B, layout.OffMTickFrame, uint64(i))
				if _, err := tick.Ring(); err != nil {
					b.Fatal(err)
				}
				v, err := done.Wait(last, 1<<30, 15*time.Second)
				if err != nil {
					b.Fatalf("round %d: %v\n%s", i, err, child.out.String())
				}
				last = v
				lat = append(lat, time.Duration(layout.Load64(m.B, layout.OffMWakeNanos)))
			}
			b.StopTimer()
			warmN := layout.Load64(m.B, layout.OffMWakeWarm)
			layout.Store64(m.B, layout.OffMTickFrame, futexStop)
			_, _ = tick.Ring()
			child.wait(b)
			slices.Sort(lat)
			r := row{p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], warm: float64(warmN) / float64(len(lat))}
			rows[md.name] = r
			b.ReportMetric(float64(r.p50)/1e3, "p50-µs")
			b.ReportMetric(float64(r.p99)/1e3, "p99-µs")
			b.ReportMetric(r.warm, "warm-frac")
			if s, ok := rows["sleeping"]; ok && md.name != "sleeping" && s.p50 > 0 {
				b.ReportMetric(float64(r.p50)/float64(s.p50), "x-sleeping-p50")
			}
		})
	}
	if len(rows) == len(modes) && rows["sleeping"].p50 > 0 {
		var sb strings.Builder
		fmt.Fprintf(&sb, "tick wake latency (goal p50 <= 10 µs, p99 <= 250 µs)\n%-9s %10s %10s %10s %14s\n", "mode", "p50 µs", "p99 µs", "warm", "p50/sleeping")
		for _, x := range modes {
			r := rows[x.name]
			fmt.Fprintf(&sb, "%-9s %10.2f %10.2f %9.0f%% %14.3f\n", x.name, float64(r.p50)/1e3, float64(r.p99)/1e3, 100*r.warm, float64(r.p50)/float64(rows["sleeping"].p50))
		}
		fmt.Print(sb.String()) // stdout: shown without -v, beside the benchmark lines
	}
}
