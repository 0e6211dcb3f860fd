package tests

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// forgedEntity is the entity a forger claims the engine created for the
// victim: no real handle (generations stay small).
const forgedEntity = world.Entity(0xDEADBEEF<<32 | 1)

// forger publishes, in every tick, an event shaped like the engine's
// "created" notice (layout.SystemEventCreated) for the victim's slot, and
// one ordinary event (type 42), and prints "forged" per tick.
type forger struct {
	name, inst, victim string
	slot               uint32
	found              bool
}

func (f *forger) Spec() module.Spec { return module.Spec{Name: f.name, Tier: module.Fast, Every: 1} }

func (f *forger) Tick(_ *module.View, c *module.Commands, _ time.Duration) error {
	if !f.found {
		seg, lm, err := moduleSegmentOf(f.inst, f.victim)
		if err != nil {
			return nil // the victim has not joined yet
		}
		f.slot, f.found = lm.Info.Slot, true
		seg.Close()
	}
	var p [layout.SystemEventCreatedSize]byte
	binary.LittleEndian.PutUint32(p[0:], f.slot)
	binary.LittleEndian.PutUint32(p[4:], 0) // the victim's first temporary id of a tick
	binary.LittleEndian.PutUint64(p[8:], uint64(forgedEntity))
	c.Publish(layout.SystemEventCreated, p[:])
	c.Publish(42, []byte("ordinary"))
	fmt.Println("forged")
	return nil
}

// victim creates one entity per tick and prints every created notice it
// gets: "created temp=<t> entity=<e>".
type victim struct {
	s    *schema
	name string
}

func (v *victim) Spec() module.Spec { return module.Spec{Name: v.name, Tier: module.Fast, Every: 1} }

func (v *victim) Tick(view *module.View, c *module.Commands, _ time.Duration) error {
	if _, err := view.Events(nil); err != nil {
		return err
	}
	for _, m := range view.Created() {
		fmt.Printf("created temp=%d entity=%#x alive=%v\n", m.Temp, uint64(m.Entity), view.IsAlive(m.Entity))
	}
	module.Set(c, c.Create(), v.s.hp, HP{V: 9})
	return nil
}

// TestHostileForgedCreatedNotice: a module publishes a forged "created"
// notice (event type 0xFFFF) for another module's slot. Playback rejects it
// with the typed reason reserved_event_type, counted per module, so it never
// reaches the event log: the victim's View.Created sees only the engine's
// notices of its own creations, and the forger's ordinary events still go
// through.
func TestHostileForgedCreatedNotice(t *testing.T) {
	hostileChild()
	r := newHostileRig(t)
	vOut := r.spawn("TestHostileForgedCreatedNotice", "victim", "victim")
	fOut := r.spawn("TestHostileForgedCreatedNotice", "forger", "forger", "FDP_VICTIM=victim")
	r.stepUntil("20 forgeries and 10 genuine notices", 15*time.Second, func() bool {
		return strings.Count(fOut.String(), "forged\n") >= 20 && strings.Count(vOut.String(), "created ") >= 10
	})
	forged := uint64(strings.Count(fOut.String(), "forged\n"))
	// One more frame: the last forged batch is played back.
	r.eng.Step()

	fm := r.module("forger")
	rej := fm.PlaybackRejectReasons[world.RejectReservedEvent.String()]
	require.GreaterOrEqual(t, rej, forged-1, "every forged notice rejected")
	require.Equal(t, rej, fm.Stats.Rejected, "and for that reason only")
	require.GreaterOrEqual(t, fm.Stats.Applied, rej, "the ordinary events were applied")

	require.NotContains(t, vOut.String(), fmt.Sprintf("entity=%#x", uint64(forgedEntity)), "the victim saw a forged notice")
	for _, l := range strings.Split(strings.TrimSpace(vOut.String()), "\n") {
		require.Contains(t, l, "alive=true", "every notice names a real entity: %s", l)
	}
	vm := r.module("victim")
	require.Zero(t, vm.Stats.Rejected)
	require.Zero(t, vm.Stats.Failures)
}
