package ipc

import (
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/fdp-engine/fdp/layout"
)

// ErrTimeout is returned by FutexWait and Doorbell.Wait when the timeout
// expires before the word changes.
var ErrTimeout = errors.New("fdp/ipc: timeout")

// Futex operations. The shared (non-_PRIVATE) variants are required: the
// words live in MAP_SHARED memory and waiter and waker are different
// processes, so the kernel must key the futex on the backing page, not on
// the process's address space.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// FutexWait sleeps while *addr == val. It returns nil when woken or when the
// word already differs from val (the caller re-reads the word: wake-ups may
// be spurious), ErrTimeout when timeout elapses first, and retries EINTR with
// the remaining time. A negative timeout waits forever; a zero timeout only
// checks the word.
//
// addr must point at a 4-byte aligned word in memory that stays mapped
// during the call (a shared segment, see layout.Word32Ptr).
func FutexWait(addr *uint32, val uint32, timeout time.Duration) error {
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		var tsp *unix.Timespec
		if timeout >= 0 {
			rem := time.Until(deadline)
			if rem <= 0 {
				return ErrTimeout
			}
			ts := unix.NsecToTimespec(int64(rem))
			tsp = &ts
		}
		// Invariant: addr points into mapped memory for the duration of the
		// call; the kernel reads *addr atomically under the futex bucket lock
		// and sleeps only if it still equals val; the timespec is relative
		// (CLOCK_MONOTONIC) and lives on this goroutine's stack/heap for the
		// duration of the call.
		_, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val),
			uintptr(unsafe.Pointer(tsp)), 0, 0)
		switch e {
		case 0, unix.EAGAIN: // woken, or the word no longer equals val
			return nil
		case unix.EINTR:
			continue
		case unix.ETIMEDOUT:
			// The kernel's relative timeout may end a hair before our
			// monotonic deadline; loop so elapsed >= timeout is guaranteed.
			continue
		default:
			return fmt.Errorf("fdp/ipc: futex wait: %w", e)
		}
	}
}

// MonoNanos returns CLOCK_MONOTONIC in nanoseconds: the clock shared by all
// processes of the machine, used for the tick stamp and wake latencies.
func MonoNanos() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// FutexWake wakes up to n processes waiting on addr and returns how many
// were woken. n <= 0 wakes all waiters.
func FutexWake(addr *uint32, n int) (int, error) {
	if n <= 0 || n > math.MaxInt32 {
		n = math.MaxInt32
	}
	// Invariant: as for FutexWait; FUTEX_WAKE does not access *addr, the
	// address only identifies the futex.
	r, _, e := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(n), 0, 0, 0)
	if e != 0 {
		return 0, fmt.Errorf("fdp/ipc: futex wake: %w", e)
	}
	return int(r), nil
}

// Doorbell is a wake-up counter in shared memory with a single waiter (the
// module for its tick bell, the engine for a module's done bell) and a
// ringer, who may also pre-wake (a bell that is not pre-woken may have more
// than one ringer: the engine rings a module's done bell itself when its
// connection closes). It consists of two 32-bit words in the same segment:
//
//   - word: incremented by every Ring (wraps around); the value waited for;
//   - need (needWake): the futex word. NeedAwake (0) while the waiter runs or
//     polls; NeedAsleep (1), stored by the waiter just before it sleeps;
//     NeedPrewoken (2), stored by Prewake over a 1.
//
// Ring costs one atomic add and one load when the waiter is polling or
// busy; the FUTEX_WAKE system call is made only when the waiter announced
// that it is going to sleep.
//
// Memory ordering (no lost wake-up). Go's atomic operations are sequentially
// consistent: all of them take effect in one total order S.
//
//	ringer:  R1 word++ (atomic add)     R2 load need; if != 0:
//	                                    R3 swap need = 0; if it was 1: FUTEX_WAKE(need)
//	waiter:  W1 store need = 1          W2 load word; if != last: return
//	         W3 FUTEX_WAIT(need, 1)     (the kernel re-checks need == 1
//	                                     atomically with queueing the waiter)
//
// If R2 reads 0, R2 precedes W1 in S, hence R1 precedes W2: W2 sees the
// incremented word and the waiter does not sleep. If R3 takes a 1, it
// precedes W3's check, which then finds 0 and returns at once, or the
// waiter is already queued and FUTEX_WAKE wakes it; either way it re-reads
// the word after R1. If R3 takes a 2, the ringer's own earlier Prewake
// already woke a queued waiter, and W3 never sleeps on a 2: no wake is
// needed. If R3 takes a 0, the waiter cleared need itself after
// W1, to return or to poll; if it polls and later sleeps again, its new W1
// follows R3 in S, so its W2 sees the ring. In every case the waiter
// observes the ring. A stale 1 (a waiter that died asleep) only costs the
// ringer a spurious system call. With more than one waiter per bell, one
// waiter's clear could hide another's sleep: the single-waiter rule matters.
//
// Pre-wake. Waking a waiter that sleeps in FUTEX_WAIT costs the wake-up of
// its CPU: tens of microseconds on a virtual machine whose idle vCPU halts.
// A ringer that knows a ring is coming (the engine, ahead of a fast module's
// tick) calls Prewake first: compare-and-swap need 1 -> 2, then FUTEX_WAKE.
// Because the futex word itself changes, a waiter between W1 and W3 does not
// miss it: W3 returns at once. The waiter sees need == 2 and the word
// unchanged, clears need and, with a warm spin set (SetWarmSpin), polls the
// word for up to that long before it sleeps again, so the ring that follows
// costs the ringer no system call and reaches a waiter that is already
// running. Without a warm spin it sleeps again at once.
type Doorbell struct {
	b        []byte
	wordOff  int
	needOff  int
	needAddr *uint32

	warmSpin time.Duration
	// Wake statistics of the waiter (only the single waiter touches them).
	warm, cold uint64
}

// Values of a doorbell's need word.
const (
	NeedAwake    = 0 // the waiter runs or polls: a ring needs no system call
	NeedAsleep   = 1 // the waiter sleeps (or is about to) in FUTEX_WAIT on the need word
	NeedPrewoken = 2 // Prewake took the sleeper's 1 and woke it
)

// WakeStats counts how the waiter's successful Waits ended.
type WakeStats struct {
	// Warm: the ring was seen while polling (the initial spin, or the warm
	// spin after a pre-wake) or just before sleeping; the ringer made no
	// system call.
	Warm uint64
	// Cold: the ring woke the waiter from FUTEX_WAIT.
	Cold uint64
}

// SetWarmSpin sets how long Wait polls the word after a pre-wake before it
// sleeps again. 0, the default, sleeps again at once. Only the waiter may
// call it.
func (d *Doorbell) SetWarmSpin(t time.Duration) { d.warmSpin = max(t, 0) }

// WakeStats returns the waiter's wake statistics. Only the waiter may call it.
func (d *Doorbell) WakeStats() WakeStats { return WakeStats{Warm: d.warm, Cold: d.cold} }

// Prewake wakes the waiter if it announced that it sleeps (need 1 -> 2, then
// FUTEX_WAKE), without ringing: the word is unchanged. It reports whether it
// took the waiter's announcement; the waiter then does not sleep (again)
// before it has seen the pre-wake. Only a bell's sole ringer may call it,
// from the goroutine that rings: Ring relies on a 2 meaning that the wake-up
// was already sent. See the type's comment.
func (d *Doorbell) Prewake() (bool, error) {
	if !layout.CAS32(d.b, d.needOff, NeedAsleep, NeedPrewoken) {
		return false, nil
	}
	_, err := FutexWake(d.needAddr, 1)
	return true, err
}

// NewDoorbell returns a doorbell over the 32-bit words at b[wordOff:] and
// b[needWakeOff:] (both 4-byte aligned, b a mapped shared segment, e.g.
// layout.OffMTick / layout.OffMTickNeedWake of a module segment).
func NewDoorbell(b []byte, wordOff, needWakeOff int) (*Doorbell, error) {
	if wordOff < 0 || needWakeOff < 0 || wordOff%4 != 0 || needWakeOff%4 != 0 ||
		wordOff > len(b)-4 || needWakeOff > len(b)-4 || wordOff == needWakeOff || !futexAligned(b) {
		return nil, fmt.Errorf("fdp/ipc: doorbell words at %d/%d invalid in a %d-byte segment", wordOff, needWakeOff, len(b))
	}
	return &Doorbell{b: b, wordOff: wordOff, needOff: needWakeOff, needAddr: layout.Word32Ptr(b, needWakeOff)}, nil
}

// futexAligned reports whether b starts 4-byte aligned (so the word offsets,
// checked to be multiples of 4, are naturally aligned). Only the address is
// inspected.
func futexAligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))&3 == 0
}

// Load returns the current value of the bell's word.
func (d *Doorbell) Load() uint32 { return layout.Load32(d.b, d.wordOff) }

// Ring increments the word and wakes the waiter if it announced it is
// sleeping. It returns the new word value.
func (d *Doorbell) Ring() (uint32, error) {
	v := layout.Add32(d.b, d.wordOff, 1)             // R1
	if layout.Load32(d.b, d.needOff) != NeedAwake && // R2
		layout.Swap32(d.b, d.needOff, NeedAwake) == NeedAsleep { // R3
		if _, err := FutexWake(d.needAddr, 1); err != nil {
			return v, err
		}
	}
	return v, nil
}

// Wait waits until the word differs from last and returns its new value. It
// first polls the word up to spin times (cheap for short waits: the ringer
// then needs no system call), then announces itself in need and sleeps in
// FUTEX_WAIT; after a pre-wake it polls for the warm spin (SetWarmSpin)
// before it sleeps again. A negative timeout waits forever. On timeout it
// returns last and ErrTimeout.
func (d *Doorbell) Wait(last uint32, spin int, timeout time.Duration) (uint32, error) {
	for i := 0; i < spin; i++ {
		if v := layout.Load32(d.b, d.wordOff); v != last {
			d.warm++
			return v, nil
		}
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		layout.Store32(d.b, d.needOff, NeedAsleep)         // W1
		if v := layout.Load32(d.b, d.wordOff); v != last { // W2
			layout.Store32(d.b, d.needOff, NeedAwake)
			d.warm++
			return v, nil
		}
		rem := time.Duration(-1)
		if timeout >= 0 {
			if rem = time.Until(deadline); rem <= 0 {
				layout.Store32(d.b, d.needOff, NeedAwake)
				if v := layout.Load32(d.b, d.wordOff); v != last {
					d.warm++
					return v, nil
				}
				return last, ErrTimeout
			}
		}
		err := FutexWait(d.needAddr, NeedAsleep, rem) // W3
		if err != nil && !errors.Is(err, ErrTimeout) {
			layout.Store32(d.b, d.needOff, NeedAwake)
			return last, err
		}
		// Woken, timed out, or need no longer 1 (a ring or a pre-wake took
		// it). Whoever changed need, the waiter now runs.
		need := layout.Swap32(d.b, d.needOff, NeedAwake)
		if v := layout.Load32(d.b, d.wordOff); v != last {
			if need == NeedPrewoken {
				d.warm++ // rung after the pre-wake, with need clear: no futex wake
			} else {
				d.cold++ // the ring took need (R3) and woke us
			}
			return v, nil
		}
		if need == NeedPrewoken && d.warmSpin > 0 {
			// Pre-woken: poll with need clear; the ring costs no system call.
			if v, ok := d.poll(last, d.warmSpin, deadline, timeout >= 0); ok {
				d.warm++
				return v, nil
			}
		}
	}
}

// poll loads the word until it differs from last, for at most dur (and not
// past deadline when bounded). Every 128 loads it reads the clock and yields
// the CPU (sched_yield): a poller must not take a core from the ringer (the
// engine, busy producing the frame the tick is for) or from other modules
// when there are more runnable processes than cores.
func (d *Doorbell) poll(last uint32, dur time.Duration, deadline time.Time, bounded bool) (uint32, bool) {
	end := time.Now().Add(dur)
	if bounded && deadline.Before(end) {
		end = deadline
	}
	for {
		for i := 0; i < 128; i++ {
			if v := layout.Load32(d.b, d.wordOff); v != last {
				return v, true
			}
		}
		if !time.Now().Before(end) {
			return last, false
		}
		unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) //nolint:errcheck // cannot fail on Linux
	}
}
