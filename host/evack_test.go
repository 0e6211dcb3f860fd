package host

import (
	"errors"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// emitSim emits n events of type 7 per frame.
type emitSim struct {
	w *world.World
	n int
}

func (s emitSim) Step(float32) {
	for i := range s.n {
		s.w.Emit(7, []byte{byte(i), 1, 2, 3})
	}
}

// TestEventAckPlayback: an acknowledgement in a module's batch becomes the
// module's acknowledged cursor and adds its counts; one that no reader of
// the log could hold (beyond the committed end, unaligned, off a record,
// behind the previous one, the wrong size) changes nothing and is counted as
// a rejected record. The cursor goes into the module's next segment, and
// the world does not take the record for a command.
func TestEventAckPlayback(t *testing.T) {
	s := newRSchema()
	w := newRWorld(t, s)
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog(), RingBytes: 4096}, w, emitSim{w: w, n: 3})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	hello := ipc.Hello{Name: "m", Tier: ipc.TierSlow, Every: math.MaxInt32} // never due: played back every frame
	_, err = e.admit(hello, ipc.PeerCred{PID: os.Getpid()})
	require.NoError(t, err)
	m := e.mods[0]
	require.Equal(t, uint64(1), layout.Load64(m.seg.Data, layout.OffMAckSeq), "nothing acknowledged yet: the end of the (empty) log")
	require.Zero(t, layout.Load64(m.seg.Data, layout.OffMAckPos))
	for range 3 {
		e.Step()
	}
	r, err := ipc.NewEventReader(e.evSeg.Data)
	require.NoError(t, err)
	cur := ipc.EventCursor{Seq: 1}
	_, err = r.ReadUpTo(&cur, 2, func(uint64, uint64, uint16, []byte) {})
	require.NoError(t, err)
	require.Equal(t, uint64(7), cur.Seq, "frames 1 and 2: 6 events")

	send := func(typ uint16, payload []byte) {
		t.Helper()
		lm, err := layout.DecodeModule(m.seg.Data)
		require.NoError(t, err)
		prod, err := ipc.NewProducer(lm.Ring())
		require.NoError(t, err)
		b, err := prod.Reserve(typ, len(payload))
		require.NoError(t, err)
		copy(b, payload)
		prod.Commit()
		e.Step()
	}
	ack := func(a layout.AckEvents) []byte {
		b := make([]byte, layout.AckEventsSize)
		layout.PutAckEvents(b, a)
		return b
	}
	rejected := func() uint64 { return m.play.Stats.Rejected[rejectBadAck] }

	send(layout.CmdAckEvents, ack(layout.AckEvents{Seq: cur.Seq, Pos: cur.Pos, Delivered: 6}))
	require.Equal(t, cur, m.evAck)
	require.Equal(t, uint64(6), m.Stats.EventsDelivered)
	require.Zero(t, rejected())

	good := cur
	tail := r.Tail()
	for _, bad := range []layout.AckEvents{
		{Seq: tail.Seq + 1, Pos: tail.Pos},      // beyond the committed end
		{Seq: good.Seq + 1, Pos: good.Pos + 4},  // unaligned
		{Seq: good.Seq + 1, Pos: good.Pos + 8},  // inside a record
		{Seq: good.Seq - 1, Pos: good.Pos - 32}, // a record, but behind the previous acknowledgement
	} {
		n := rejected()
		send(layout.CmdAckEvents, ack(bad))
		require.Equal(t, n+1, rejected(), "%+v", bad)
		require.Equal(t, good, m.evAck, "%+v", bad)
	}
	n := rejected()
	send(layout.CmdAckEvents, ack(layout.AckEvents{Seq: tail.Seq, Pos: tail.Pos})[:24])
	require.Equal(t, n+1, rejected(), "the wrong size")
	require.Equal(t, good, m.evAck)
	require.Equal(t, uint64(6), m.Stats.EventsDelivered, "a refused acknowledgement adds nothing")
	require.Zero(t, m.Stats.Applied, "acknowledgements are not commands")

	// The tail (acknowledging the dropped tail of an overrun) is fine.
	send(layout.CmdAckEvents, ack(layout.AckEvents{Seq: tail.Seq, Pos: tail.Pos, Delivered: 2, Lost: 5}))
	require.Equal(t, tail, m.evAck)
	require.Equal(t, uint64(8), m.Stats.EventsDelivered)
	require.Equal(t, uint64(5), m.Stats.EventsLost)

	// The module's next process gets the cursor in its new segment.
	e.closing[m.Slot].Store(int64(os.Getpid()))
	_, err = e.admit(hello, ipc.PeerCred{PID: os.Getppid()})
	require.NoError(t, err)
	require.Equal(t, tail.Seq, layout.Load64(m.seg.Data, layout.OffMAckSeq))
	require.Equal(t, tail.Pos, layout.Load64(m.seg.Data, layout.OffMAckPos))

	// A world command type never collides with it: the world refuses it.
	err = world.NewPlayback(w).Apply(layout.CmdAckEvents, ack(layout.AckEvents{Seq: 1}))
	var re *world.RejectError
	require.True(t, errors.As(err, &re))
	require.Equal(t, world.RejectUnknownType, re.Reason)
}

// TestEventAckNotInherited: a slot reused for another name does not inherit
// the acknowledged cursor: its first process reads the events committed
// from its admission on.
func TestEventAckNotInherited(t *testing.T) {
	s := newRSchema()
	w := newRWorld(t, s)
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog(), RingBytes: 4096}, w, emitSim{w: w, n: 2})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	for i := range layout.MaxModules {
		_, err = e.admit(ipc.Hello{Name: fmt.Sprintf("m%d", i), Tier: ipc.TierSlow, Every: math.MaxInt32},
			ipc.PeerCred{PID: os.Getpid()})
		require.NoError(t, err)
	}
	m := e.mods[5]
	require.Equal(t, ipc.EventCursor{Seq: 1}, m.evAck, "admitted before any event")
	for range 3 {
		e.Step()
	}
	m.evAck = ipc.EventCursor{Seq: 3, Pos: 2 * 32}
	require.NoError(t, e.evw.CheckCursor(m.evAck))
	e.reclaim(m)
	_, err = e.admit(ipc.Hello{Name: "newcomer", Tier: ipc.TierSlow, Every: math.MaxInt32}, ipc.PeerCred{PID: os.Getpid()})
	require.NoError(t, err)
	n := e.mods[5]
	require.Equal(t, "newcomer", n.Name)
	end := ipc.EventCursor{Seq: 7, Pos: 6 * 32} // 3 frames of 2 events
	require.Equal(t, end, e.evw.Committed())
	require.Equal(t, end, n.evAck)
	require.Equal(t, end.Seq, layout.Load64(n.seg.Data, layout.OffMAckSeq))
	require.Equal(t, end.Pos, layout.Load64(n.seg.Data, layout.OffMAckPos))
}
