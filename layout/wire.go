package layout

import "time"

// Wire encodings of the tick protocol between the engine and a module. They
// belong to neither side: the engine (host/) writes them and the module SDK
// (module/) reads them (or the other way round), and a module written in
// another language needs exactly these. The words they go into are the
// module segment's tick and done lines (OffMTickLease, OffMDoneFrame) and
// the shared event log (event types).

// DoneFailed is set in the done frame word (OffMDoneFrame) by a module whose
// tick failed (an error, a panic, a fault, or no frame for the tick); the
// other 63 bits hold the frame number of the tick. The engine counts a
// failed tick towards the module's circuit breaker.
const DoneFailed = uint64(1) << 63

// DoneFrame returns the frame number held in a done frame word and whether
// the tick failed.
func DoneFrame(w uint64) (frame uint64, failed bool) { return w &^ DoneFailed, w&DoneFailed != 0 }

// Tick lease word (OffMTickLease): bits 0-7 hold slot+1 (0: no leased slot,
// the module pins the latest frame itself: the fast tier, GDB), bits 8-63 the
// simulated time since the module's previous tick in microseconds. The
// engine stores it before the tick frame word (OffMTickFrame), so a module
// that sees a new tick frame reads this tick's lease.
const (
	tickSlotBits = 8
	tickSlotMask = 1<<tickSlotBits - 1
	// TickMaxSlot is the largest slot index a tick lease word can name.
	TickMaxSlot = tickSlotMask - 1
)

// PackTick packs a tick lease word: slot is the leased frame slot (-1 for
// none: pin the latest frame), dt the simulated time since the module's
// previous tick (truncated to microseconds; negative counts as 0).
func PackTick(slot int, dt time.Duration) uint64 {
	if dt < 0 {
		dt = 0
	}
	return uint64(dt/time.Microsecond)<<tickSlotBits | uint64(slot+1)&tickSlotMask
}

// UnpackTick splits a tick lease word (see PackTick): slot -1 means no
// leased slot.
func UnpackTick(w uint64) (slot int, dt time.Duration) {
	return int(w&tickSlotMask) - 1, time.Duration(w>>tickSlotBits) * time.Microsecond
}

// Event types SystemEventFirst..0xFFFF are reserved for the engine's system
// events. The engine rejects a module's PublishEvent of a reserved type at
// playback (world.RejectReservedEvent), so an event of such a type in the
// log comes from the engine alone; the engine's own systems may use the rest.
const SystemEventFirst uint16 = 0xFF00

// IsSystemEvent reports whether typ is in the range reserved for the
// engine's system events.
func IsSystemEvent(typ uint16) bool { return typ >= SystemEventFirst }

// SystemEventCreated is the event type the engine publishes in the event log
// after playback for each temporary id it resolved. Payload (16 bytes,
// little-endian): u32 module slot, u32 temporary id, u64 entity
// (SystemEventCreatedSize bytes). It is in the reserved range: no module can
// publish it.
const SystemEventCreated uint16 = 0xFFFF

// SystemEventCreatedSize is the payload size of a SystemEventCreated event.
const SystemEventCreatedSize = 16
