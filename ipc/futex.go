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
// single ringer. It consists of two 32-bit words in the same segment:
//
//   - word: incremented by every Ring (wraps around); the futex word;
//   - needWake: set to 1 by the waiter just before it sleeps, 0 otherwise.
//
// Ring costs one atomic add and one load when the waiter is spinning or
// busy; the FUTEX_WAKE system call is made only when the waiter announced
// that it is going to sleep.
//
// Memory ordering (no lost wake-up). Go's atomic operations are sequentially
// consistent: all of them take effect in one total order S.
//
//	ringer:  R1 word++ (atomic add)     R2 load needWake; if 1: FUTEX_WAKE
//	waiter:  W1 store needWake = 1      W2 load word; if != last: return
//	         W3 FUTEX_WAIT(word, last)  (kernel re-checks word == last
//	                                     atomically with queueing the waiter)
//
// If R2 reads 1, W1 precedes R2 and the ringer calls FUTEX_WAKE after R1:
// either the waiter is already queued (it is woken) or it has not reached
// W3 yet, in which case the kernel's check at W3 sees the incremented word
// and returns at once. If R2 reads 0, R2 precedes W1 in S, hence R1 precedes
// W2, so W2 sees the incremented word and the waiter does not sleep. In both
// cases the waiter observes the ring. The waiter clears needWake after it
// stops waiting; a stale 1 (e.g. the waiter died asleep) only costs the
// ringer a spurious system call. With more than one waiter per bell, one
// waiter's clear could hide another's sleep: the single-waiter rule matters.
type Doorbell struct {
	b        []byte
	wordOff  int
	needOff  int
	wordAddr *uint32
}

// NewDoorbell returns a doorbell over the 32-bit words at b[wordOff:] and
// b[needWakeOff:] (both 4-byte aligned, b a mapped shared segment, e.g.
// layout.OffMTick / layout.OffMTickNeedWake of a module segment).
func NewDoorbell(b []byte, wordOff, needWakeOff int) (*Doorbell, error) {
	if wordOff < 0 || needWakeOff < 0 || wordOff%4 != 0 || needWakeOff%4 != 0 ||
		wordOff > len(b)-4 || needWakeOff > len(b)-4 || wordOff == needWakeOff || !futexAligned(b) {
		return nil, fmt.Errorf("fdp/ipc: doorbell words at %d/%d invalid in a %d-byte segment", wordOff, needWakeOff, len(b))
	}
	return &Doorbell{b: b, wordOff: wordOff, needOff: needWakeOff, wordAddr: layout.Word32Ptr(b, wordOff)}, nil
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
	v := layout.Add32(d.b, d.wordOff, 1)    // R1
	if layout.Load32(d.b, d.needOff) != 0 { // R2
		if _, err := FutexWake(d.wordAddr, 1); err != nil {
			return v, err
		}
	}
	return v, nil
}

// Wait waits until the word differs from last and returns its new value. It
// first polls the word up to spin times (cheap for short waits: the ringer
// then needs no system call), then announces itself in needWake and sleeps
// in FUTEX_WAIT. A negative timeout waits forever. On timeout it returns
// last and ErrTimeout.
func (d *Doorbell) Wait(last uint32, spin int, timeout time.Duration) (uint32, error) {
	for i := 0; i < spin; i++ {
		if v := layout.Load32(d.b, d.wordOff); v != last {
			return v, nil
		}
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		layout.Store32(d.b, d.needOff, 1)                  // W1
		if v := layout.Load32(d.b, d.wordOff); v != last { // W2
			layout.Store32(d.b, d.needOff, 0)
			return v, nil
		}
		rem := time.Duration(-1)
		if timeout >= 0 {
			if rem = time.Until(deadline); rem <= 0 {
				layout.Store32(d.b, d.needOff, 0)
				if v := layout.Load32(d.b, d.wordOff); v != last {
					return v, nil
				}
				return last, ErrTimeout
			}
		}
		if err := FutexWait(d.wordAddr, last, rem); err != nil && !errors.Is(err, ErrTimeout) { // W3
			layout.Store32(d.b, d.needOff, 0)
			return last, err
		}
	}
}
