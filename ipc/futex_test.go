package ipc

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/fdp-engine/fdp/layout"
)

// futexStop in the tick frame word tells a pong child to exit.
const futexStop = ^uint64(0)

func futexMonoNanos() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

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
// frame, stores its wake latency (CLOCK_MONOTONIC now minus the stamp in the
// tick lease word) into the heartbeat word and rings done. It spins
// FDP_FUTEX_SPIN times before sleeping.
func futexChildPong() error {
	m, err := ringOpenModule(os.Getenv("FDP_RING_PATH"))
	if err != nil {
		return err
	}
	spin, _ := strconv.Atoi(os.Getenv("FDP_FUTEX_SPIN"))
	tick, done, err := futexBells(m.B)
	if err != nil {
		return err
	}
	var last uint32 // the parent rings tick i in round i: the word starts at 0
	for {
		v, err := tick.Wait(last, spin, 20*time.Second)
		if err != nil {
			return err
		}
		now := futexMonoNanos()
		last = v
		frame := layout.Load64(m.B, layout.OffMTickFrame)
		if frame == futexStop {
			return nil
		}
		layout.Store64(m.B, layout.OffMHeartbeat, now-layout.Load64(m.B, layout.OffMTickLease))
		layout.Store64(m.B, layout.OffMDoneFrame, frame)
		if _, err := done.Ring(); err != nil {
			return err
		}
	}
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

func TestDoorbellRejectsBadWords(t *testing.T) {
	b := ringAnonRegion(t, 4096)
	for _, c := range [][2]int{{-4, 0}, {0, 0}, {2, 8}, {0, 6}, {len(b) - 2, 0}, {0, len(b)}} {
		_, err := NewDoorbell(b, c[0], c[1])
		require.Error(t, err, "%v", c)
	}
	_, err := NewDoorbell(b[1:], 4, 8)
	require.Error(t, err, "misaligned segment")
}

// TestFutexCrossProcessWake: a child sleeps in FUTEX_WAIT on the tick word
// of a shared segment; the parent proves it is queued there (a shared
// FUTEX_WAKE on the same page finds exactly one waiter, which a _PRIVATE
// wait would not be), then rings; the child sees the ring and rings back.
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
	addr := layout.Word32Ptr(m.B, layout.OffMTick)
	for {
		n, err := FutexWake(addr, 1) // spurious wake: the word is unchanged, the child sleeps again
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
// with and without spinning on both sides, checking that no ring is lost or
// duplicated.
func TestFutexPingPong(t *testing.T) {
	for _, spin := range []int{0, 2000} {
		t.Run(fmt.Sprintf("spin%d", spin), func(t *testing.T) {
			path, m := ringCreateModule(t, 4096)
			tick, done, err := futexBells(m.B)
			require.NoError(t, err)
			child := ringStartChild(t, "futex-pong", "FDP_RING_PATH="+path, fmt.Sprintf("FDP_FUTEX_SPIN=%d", spin))
			last := done.Load()
			const rounds = 500
			for i := uint64(1); i <= rounds; i++ {
				layout.Store64(m.B, layout.OffMTickLease, futexMonoNanos())
				layout.Store64(m.B, layout.OffMTickFrame, i)
				_, err := tick.Ring()
				require.NoError(t, err)
				v, err := done.Wait(last, spin, 15*time.Second)
				require.NoError(t, err, "round %d, child output:\n%s", i, child.out.String())
				require.Equal(t, last+1, v, "exactly one done ring per tick")
				last = v
				require.Equal(t, i, layout.Load64(m.B, layout.OffMDoneFrame))
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
// the parent stamps CLOCK_MONOTONIC, rings the tick bell of a child that is
// asleep in FUTEX_WAIT (the parent waits for its need-wake announcement
// first), and the child records now-stamp when it returns from Wait.
func BenchmarkFutexWakeLatency(b *testing.B) {
	for _, spin := range []int{0, 20000} {
		b.Run(fmt.Sprintf("spin%d", spin), func(b *testing.B) {
			path, m := ringCreateModule(b, 4096)
			tick, done, err := futexBells(m.B)
			require.NoError(b, err)
			child := ringStartChild(b, "futex-pong", "FDP_RING_PATH="+path, fmt.Sprintf("FDP_FUTEX_SPIN=%d", spin))
			lat := make([]time.Duration, 0, b.N)
			last := done.Load()
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				if spin == 0 {
					// Ring only once the child announced its sleep, and give
					// it 30 µs to get into FUTEX_WAIT: this measures a real
					// kernel wake-up, not the check just before sleeping.
					for layout.Load32(m.B, layout.OffMTickNeedWake) == 0 {
						runtime.Gosched()
					}
					for t0 := time.Now(); time.Since(t0) < 30*time.Microsecond; {
					}
				}
				layout.Store64(m.B, layout.OffMTickLease, futexMonoNanos())
				layout.Store64(m.B, layout.OffMTickFrame, uint64(i))
				if _, err := tick.Ring(); err != nil {
					b.Fatal(err)
				}
				v, err := done.Wait(last, 1<<30, 15*time.Second)
				if err != nil {
					b.Fatalf("round %d: %v\n%s", i, err, child.out.String())
				}
				last = v
				lat = append(lat, time.Duration(layout.Load64(m.B, layout.OffMHeartbeat)))
			}
			b.StopTimer()
			layout.Store64(m.B, layout.OffMTickFrame, futexStop)
			_, _ = tick.Ring()
			child.wait(b)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2])/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
		})
	}
}
