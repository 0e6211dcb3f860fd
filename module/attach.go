package module

// Attaching to an engine: the handshake over the control socket, mapping the
// segments its welcome passes, and where this process starts reading events.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
)

// errRedialWait: a handshake waits for the engine to handle the end of the
// connection this process dropped (see abandon).
var errRedialWait = errors.New("waiting for the engine to see the dropped connection")

// abandon closes a connection the engine has admitted and holds the next
// handshake back for two of its frame periods (50 to 200 ms). The engine
// handles the end of a module's connection at its next frame, by the
// module's pid: a handshake of this process before then would be taken for
// the dropped connection's incarnation and reclaimed with it.
func (s *session) abandon(conn *ipc.ControlConn, wel ipc.Welcome) {
	conn.Close()
	s.redial = time.Now().Add(min(max(2*time.Duration(wel.FramePeriod), 50*time.Millisecond), 200*time.Millisecond))
}

// attach connects to the instance's control socket and maps the segments
// the engine passes with its welcome, retrying until deadline while the
// engine is not up yet (no socket, or a dead engine's socket that refuses
// connections).
func (s *session) attach(ctx context.Context, deadline time.Time) error {
	w := newDirWatch(shm.Dir)
	defer w.close()
	var last error
	for {
		err := s.tryAttach()
		if err == nil {
			if s.beat != nil {
				s.beat.Close()
				s.beat = nil
			}
			s.startWatch(ctx)
			return nil
		}
		if Refused(err) || errors.Is(err, ipc.ErrRejected) {
			// The engine refused this hello: returned at once, not
			// retried until deadline (an invalid hello used to be).
			return fmt.Errorf("attach to %q: %w", s.opt.Instance, err)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("attach to %q: %w", s.opt.Instance, last)
		}
		if s.beat != nil {
			layout.Store64(s.beat.Data, layout.OffMHeartbeat, uint64(time.Now().UnixNano()))
		}
		// No socket, or nobody listening on it yet: the engine is
		// starting. Wait for a change in the segment directory (bounded:
		// the listener may start after the socket's name appears).
		if err := w.wait(ctx, time.Until(deadline)); err != nil {
			return err
		}
	}
}

// tryAttach makes one attempt: dial the engine's control socket, then map
// the descriptors of its welcome (the world and event log read-only, the
// module's own segment read-write). The descriptors come from the engine
// that answered, so they always belong to the same, live engine.
func (s *session) tryAttach() error {
	if time.Now().Before(s.redial) {
		return errRedialWait
	}
	var names []string
	for _, c := range s.opt.Registry.Components() {
		names = append(names, c.Name)
	}
	hello := ipc.Hello{
		Name: s.spec.Name, Tier: s.spec.Tier, Every: s.spec.Every, Components: names,
		SchemaHash: s.opt.Registry.SchemaHash(), PID: os.Getpid(), Group: s.spec.Group,
		MaxRuntime: int64(s.spec.MaxRuntime), Lifecycle: lifecycleWire(s.sub), WakeOn: s.spec.WakeOn.wire(),
	}
	hello.SetReadMask(s.spec.Reads)
	joined := ipc.MonoNanos()
	conn, wel, err := ipc.Dial(s.opt.Instance, hello, 2*time.Second)
	if err != nil {
		return err
	}
	files := wel.Files
	wel.Files = nil
	s.conn, s.wel, s.joined = conn, wel, joined
	var world *shm.Segment
	fail := func(err error) error {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		if s.reader != nil {
			s.reader.Close() // also unmaps world
		} else if world != nil {
			world.Close()
		}
		for _, seg := range []*shm.Segment{s.modSeg, s.evSeg} {
			if seg != nil {
				seg.Close()
			}
		}
		s.abandon(s.conn, wel)
		s.reader, s.conn, s.modSeg, s.evSeg, s.prod, s.tick, s.done = nil, nil, nil, nil, nil, nil, nil
		return err
	}
	take := func(i ipc.WelcomeFD) *os.File { f := files[i]; files[i] = nil; return f }
	if world, err = shm.MapFD(take(ipc.WelcomeFDWorld), wel.Segments.World, false); err != nil {
		return fail(err)
	}
	if s.evSeg, err = shm.MapFD(take(ipc.WelcomeFDEvents), wel.Segments.Events, false); err != nil {
		return fail(err)
	}
	if s.modSeg, err = shm.MapFD(take(ipc.WelcomeFDModule), wel.Segments.Module, true); err != nil {
		return fail(err)
	}
	lm, err := layout.DecodeModule(s.modSeg.Data)
	if err != nil {
		return fail(err)
	}
	if int(lm.Info.Slot) != wel.Slot {
		return fail(fmt.Errorf("%w: welcome names slot %d, the module segment passed is slot %d", ipc.ErrControl, wel.Slot, lm.Info.Slot))
	}
	if s.reader, err = fsync.NewModuleReader(world, lm, fsync.AttachOptions{Name: s.spec.Name, Registry: s.opt.Registry}); err != nil {
		world = nil // closed by NewModuleReader
		return fail(err)
	}
	if s.prod, err = ipc.NewProducer(lm.Ring()); err != nil {
		return fail(err)
	}
	if s.tick, err = ipc.NewDoorbell(s.modSeg.Data, layout.OffMTick, layout.OffMTickNeedWake); err != nil {
		return fail(err)
	}
	if s.spec.Tier == Fast {
		warm := s.opt.WarmSpin
		if warm == 0 {
			warm = DefaultWarmSpin
		}
		s.tick.SetWarmSpin(warm) // negative: off
	}
	if s.done, err = ipc.NewDoorbell(s.modSeg.Data, layout.OffMDone, layout.OffMDoneNeedWake); err != nil {
		return fail(err)
	}
	evr, err := ipc.NewEventReader(s.evSeg.Data)
	if err != nil {
		return fail(err)
	}
	cur := s.eventStart(evr)
	s.view = View{events: evr, cursor: cur, slot: uint32(wel.Slot), reads: s.spec.Reads, obs: &s.obs, sub: s.sub,
		reg: s.opt.Registry, mod: s.modSeg.Data}
	s.cmds = Commands{p: s.prod, reg: s.opt.Registry}
	s.ack, s.foreignChecked = eventAck{cursor: cur}, false
	b := s.modSeg.Data
	layout.Store32(b, layout.OffMPID, uint32(os.Getpid()))
	layout.Store64(b, layout.OffMStartTime, shm.SelfStartTime())
	layout.Store64(b, layout.OffMHeartbeat, uint64(time.Now().UnixNano()))
	return nil
}

// eventStart is where this attach reads events from: the cursor the engine
// wrote into the module segment's event line. It is the acknowledgement of
// the module's last played batch (a restarted process resumes at the first
// event no committed tick got; if it was overwritten meanwhile, the first
// read reports the overrun), or for a module new to the engine (also a
// slot reused for another name, and every module after an engine restart:
// the new engine has a new log, in which the old cursor means nothing) the
// end of the log when the engine admitted it. Zero (nothing written): the
// log's tail.
func (s *session) eventStart(evr *ipc.EventReader) ipc.EventCursor {
	b := s.modSeg.Data
	// ORDER(evack): the engine stored them before it sent the welcome.
	ack := ipc.EventCursor{Seq: layout.Load64(b, layout.OffMAckSeq), Pos: layout.Load64(b, layout.OffMAckPos)}
	tail := evr.Tail()
	switch {
	case ack.Seq == 0:
		return tail
	case ack.Seq > tail.Seq || ack.Pos > tail.Pos:
		// The engine checks what it writes there: not from this log.
		s.opt.Logger.Warn("acknowledged event cursor ahead of the event log: reading from its tail",
			"ack_seq", ack.Seq, "ack_pos", ack.Pos, "tail_seq", tail.Seq, "tail_pos", tail.Pos)
		return tail
	}
	return ack
}

// startWatch rings the module's own tick bell when the engine's connection
// ends or ctx is done, so that a loop asleep on the bell sees it at once
// rather than at its wait's timeout. The extra ring only wakes the loop: it
// checks both before it runs a tick. detach stops it.
func (s *session) startWatch(ctx context.Context) {
	bell, err := ipc.NewDoorbell(s.modSeg.Data, layout.OffMTick, layout.OffMTickNeedWake)
	if err != nil {
		return // the loop's wait timeout still sees both
	}
	stop, done, conn := make(chan struct{}), make(chan struct{}), s.conn
	s.stopWatch, s.watchDone = stop, done
	go func() {
		defer close(done)
		select {
		case <-conn.Done():
		case <-ctx.Done():
		case <-stop:
			return
		}
		_, _ = bell.Ring()
	}()
}
