package module

// The tick loop: waiting on the tick bell, running a tick on its frame,
// committing its batch, and keeping the heartbeat alive during long ticks.

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	fsync "github.com/fdp-engine/fdp/sync"
)

// pendingTick reports whether a tick rung for this incarnation waits in
// the module segment: its frame is newer than the last done frame and it was
// stamped after the handshake. The engine keeps a module's slot (and
// segment) across module restarts, so a tick it rang for a previous
// incarnation that died before finishing it is still there; running it
// would open a lease the engine has reclaimed since ("slot is not leased to
// this reader"). The engine stores the stamp before it increments the tick
// word, so a caller that loaded the tick word before this check sees the
// stamp of every tick counted in that word.
func (s *session) pendingTick() bool {
	b := s.modSeg.Data
	done, _ := layout.DoneFrame(layout.Load64(b, layout.OffMDoneFrame))
	return layout.Load64(b, layout.OffMTickFrame) > done && layout.Load64(b, layout.OffMTickStamp) >= s.joined
}

// loop runs ticks until ctx is done, MaxTicks, or the engine goes away
// (ErrEngineGone).
func (s *session) loop(ctx context.Context) error {
	b := s.modSeg.Data
	stopBeat := s.beatDuringTicks(b)
	defer stopBeat()
	last := s.tick.Load() // before pendingTick: see there
	var warned time.Time  // rate limit of the "no frame" warning
	for {
		select {
		case <-ctx.Done():
			// A stop that was asked for (SIGTERM): no tick runs any
			// more, and the engine counts the end of the connection
			// as a clean leave, not a death.
			layout.Store64(b, layout.OffMLeaving, 1)
			return ctx.Err()
		case <-s.conn.Done():
			return ErrEngineGone
		default:
		}
		var v uint32
		var err error
		var wake uint64 // tick wake latency, 0 when the tick was already pending
		if s.pendingTick() {
			// Rung before this loop waited (e.g. right after the handshake).
			v = s.tick.Load()
		} else {
			v, err = s.tick.Wait(last, 200, 100*time.Millisecond)
			if err == nil {
				wake = 1 // never 0 for a tick that was waited for
				if now, stamp := ipc.MonoNanos(), layout.Load64(b, layout.OffMTickStamp); now > stamp {
					wake = now - stamp
				}
			}
		}
		layout.Store64(b, layout.OffMHeartbeat, uint64(time.Now().UnixNano()))
		if errors.Is(err, ipc.ErrTimeout) {
			continue
		}
		if err != nil {
			return err
		}
		last = v
		if !s.pendingTick() {
			// Our own ring (engine gone, ctx done: checked above), or a
			// previous incarnation's tick.
			continue
		}
		ws := s.tick.WakeStats()
		layout.Store64(b, layout.OffMWakeNanos, wake)
		layout.Store64(b, layout.OffMWakeWarm, ws.Warm)
		layout.Store64(b, layout.OffMWakeCold, ws.Cold)
		frame := layout.Load64(b, layout.OffMTickFrame)
		slot, dt := layout.UnpackTick(layout.Load64(b, layout.OffMTickLease))
		failed := s.runTick(frame, slot, dt, &warned)
		done := frame
		if failed {
			done |= layout.DoneFailed
		}
		seen := layout.Load64(b, layout.OffMSTicks) // before the done: see settle
		last := s.opt.MaxTicks > 0 && s.ticks+1 >= s.opt.MaxTicks
		if last {
			// Before the done: no tick is dispatched to a process that is
			// leaving (ORDER: the engine reads it when the module is idle,
			// i.e. after it saw the done).
			layout.Store64(b, layout.OffMLeaving, 1)
		}
		layout.Store64(b, layout.OffMDoneFrame, done)
		_, _ = s.done.Ring()
		s.ticks++
		if last {
			s.settle(ctx, seen)
			return nil
		}
	}
}

// settleTimeout bounds settle: the engine sees a done within a frame period
// (a slow one: at its next frame), far below this.
const settleTimeout = 2 * time.Second

// settle waits, after Run's last tick (Options.MaxTicks), until the engine
// has taken what that tick left, so that a process that returns from Run and
// exits loses nothing: the engine plays a dead module's ring back only as
// far as it had before the death (it resets the ring of a module it took for
// dead), so a batch committed just before the exit would be dropped, the
// tick's event acknowledgement with it, and a failed last tick would not be
// counted. Done when the engine's statistics block (written at the end of
// the frame, after the playback) counts one tick more than seen, its count
// loaded before the done was stored, and the ring is drained; or when ctx
// ends, the engine goes away, or settleTimeout passes.
func (s *session) settle(ctx context.Context, seen uint64) {
	b := s.modSeg.Data
	ring := s.prod.Region()
	deadline := time.Now().Add(settleTimeout)
	for time.Now().Before(deadline) {
		if layout.Load64(b, layout.OffMSTicks) > seen &&
			layout.Load64(ring, layout.RingOffHead) == layout.Load64(ring, layout.RingOffTail) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.conn.Done():
			s.opt.Logger.Warn("the engine went away before it took the last tick's batch: it is lost")
			return
		case <-time.After(time.Millisecond):
		}
	}
	s.opt.Logger.Warn("the engine did not take the last tick's batch before Run returned", "waited", settleTimeout)
}

// warnEvery bounds the rate of per-tick warnings.
const warnEvery = time.Second

// runTick pins the tick's frame (latest for GDB, the leased slot for SoD),
// runs the module and commits its commands. It reports failure.
func (s *session) runTick(frame uint64, slot int, dt time.Duration, warned *time.Time) (failed bool) {
	var f *fsync.Frame
	var err error
	if slot < 0 {
		f, err = s.reader.Pin()
	} else if f, err = s.reader.OpenLeased(slot); err == nil && f.Number() != frame {
		// The engine leased this slot with this tick's frame: another frame
		// means the lease is not (or no longer) ours.
		err = fmt.Errorf("%w: slot %d holds frame %d, the tick is frame %d", fsync.ErrLeaseInvalid, slot, f.Number(), frame)
		_ = f.Release()
	}
	if err != nil {
		if now := time.Now(); now.Sub(*warned) >= warnEvery {
			*warned = now
			s.opt.Logger.Warn("no frame for tick", "frame", frame, "slot", slot, "err", err)
		}
		return true
	}
	s.view.f, s.view.err = f, nil
	s.cmds.begin()
	if !s.foreignChecked {
		s.skipForeignTemps(f.Number())
		s.foreignChecked = true
	}
	start := time.Now()
	limit := s.tickLimit(slot)
	s.tickBegan.Store(start.UnixNano())
	err = s.safeTick(dt)
	s.tickBegan.Store(0)
	rerr := f.Release()
	if limit > 0 && time.Since(start) > limit {
		// The engine has revoked the snapshot (its slot may have been
		// rewritten under the tick): nothing computed from it counts.
		err = fmt.Errorf("tick exceeded its runtime (%d ms): snapshot revoked", limit.Milliseconds())
		if rerr != nil {
			err = fmt.Errorf("%w (%w)", err, rerr)
		}
	} else if rerr != nil && err == nil {
		err = rerr // torn frame: what the module computed cannot be trusted
	}
	s.view.f, s.view.buf.on = nil, false
	if err == nil && s.view.err != nil {
		err = s.view.err
	}
	if err == nil && s.cmds.err != nil {
		err = s.cmds.err
	}
	if err == nil {
		err = s.ackEvents() // the last record of the batch
	}
	if err != nil {
		s.prod.Abort()
		s.eventsRewound()
		if now := time.Now(); now.Sub(*warned) >= warnEvery {
			*warned = now
			s.opt.Logger.Warn("tick failed", "frame", frame, "err", err)
		}
		return true
	}
	s.prod.Commit()
	s.prod.PublishStats() // one commit per tick: keep the ring's counters current
	s.eventsCommitted()
	// The mark of world.Changed moves with the commit only: a failed tick
	// leaves it, so its changes are seen by the next tick.
	s.view.since, s.view.lastFrame = f.Info().Version+1, f.Number()
	return false
}

// safeTick runs the module's Tick turning panics, including memory faults
// from writes into the read-only mapping, into errors.
func (s *session) safeTick(dt time.Duration) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(interface{ Addr() uintptr }); ok && s.reader.Contains(f.Addr()) {
				// The runtime reports a fault as a nil dereference: name
				// what happened instead.
				err = fmt.Errorf("%s wrote into the read-only view: %s, address %#x (the View is read-only shared memory: copy a value out, change it, send a command)",
					s.spec.Name, s.reader.Locate(f.Addr()), f.Addr())
				return
			}
			err = fmt.Errorf("%s panicked: %v", s.spec.Name, r)
		}
	}()
	if s.observing || len(s.obs.resync) > 0 {
		// The observers run first, on the tick's events (lifecycle.go).
		if err := s.view.observe(); err != nil {
			return err
		}
	}
	return s.m.Tick(&s.view, &s.cmds, dt)
}

// tickLimit is the runtime of a tick on slot (a slow tick's lease; 0 for a
// fast tick): the engine's, from the welcome, else the module's Spec.
func (s *session) tickLimit(slot int) time.Duration {
	if slot < 0 {
		s.tickMax.Store(0)
		return 0
	}
	d := time.Duration(s.wel.MaxRuntime)
	if d <= 0 {
		d = s.spec.MaxRuntime
	}
	s.tickMax.Store(int64(d))
	return d
}

// heartbeatEvery is how often a long tick's heartbeat is refreshed.
const heartbeatEvery = 250 * time.Millisecond

// beatDuringTicks keeps the heartbeat in b fresh while a slow tick runs,
// up to its runtime: a legitimately long tick is not taken for a hung
// module by the supervisor, while a tick that outlives its runtime (or a
// hung fast tick) stops beating. The returned function stops it.
func (s *session) beatDuringTicks(b []byte) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				began, limit := s.tickBegan.Load(), s.tickMax.Load()
				if began != 0 && limit > 0 && now.UnixNano()-began <= limit {
					layout.Store64(b, layout.OffMHeartbeat, uint64(now.UnixNano()))
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}
