package layout

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Wire encodings of the tick protocol between the engine and a module. They
// belong to neither side: the engine (host/) writes them and the module SDK
// (module/) reads them (or the other way round), and a module written in
// another language needs exactly these. The words they go into are the
// module segment's tick and done lines (OffMTickLease, OffMDoneFrame), the
// shared event log (event types) and the command ring (reserved record
// types: the event acknowledgement).

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

// Command ring record types CmdReservedFirst..0xFFFF carry the protocol
// between the SDK and the engine, not commands for the world: the engine
// handles them at playback before world.Playback sees the batch's other
// records, and world's command types (world.CmdCreate..world.CmdEvent) are
// small numbers far below them. A reserved type the engine does not know is
// rejected like any unknown command (world.RejectUnknownType).
const CmdReservedFirst uint16 = 0xFF00

// CmdAckEvents acknowledges events: the SDK appends one to a tick's command
// batch, right before it commits the batch, whenever the tick moved the
// module's event cursor. It commits with the batch or not at all (a failed
// or killed tick commits nothing), so the acknowledgement is atomic with the
// commands computed from those events. The engine keeps the last valid one
// per module (across the module's restarts) and writes it into each new
// segment of the module (OffMAckSeq, OffMAckPos), where a restarted process
// resumes: at the first event of a tick that never committed.
//
// Payload (AckEventsSize bytes, little-endian): u64 cursor sequence (the
// first event not delivered), u64 its logical position in the event log,
// u64 events delivered and u64 events lost to overruns since the previous
// acknowledgement of this process (the engine adds them up per module).
const CmdAckEvents uint16 = CmdReservedFirst + 1

// AckEventsSize is the payload size of a CmdAckEvents record.
const AckEventsSize = 32

// AckEvents is the payload of a CmdAckEvents record.
type AckEvents struct {
	Seq, Pos        uint64 // the event cursor: next event not delivered
	Delivered, Lost uint64 // since the previous acknowledgement
}

// PutAckEvents encodes a into b (AckEventsSize bytes).
func PutAckEvents(b []byte, a AckEvents) {
	binary.LittleEndian.PutUint64(b[0:], a.Seq)
	binary.LittleEndian.PutUint64(b[8:], a.Pos)
	binary.LittleEndian.PutUint64(b[16:], a.Delivered)
	binary.LittleEndian.PutUint64(b[24:], a.Lost)
}

// DecodeAckEvents decodes a CmdAckEvents payload; a payload of another size
// is ErrCorrupt.
func DecodeAckEvents(b []byte) (AckEvents, error) {
	if len(b) != AckEventsSize {
		return AckEvents{}, fmt.Errorf("%w: event acknowledgement of %d bytes, want %d", ErrCorrupt, len(b), AckEventsSize)
	}
	return AckEvents{
		Seq:       binary.LittleEndian.Uint64(b[0:]),
		Pos:       binary.LittleEndian.Uint64(b[8:]),
		Delivered: binary.LittleEndian.Uint64(b[16:]),
		Lost:      binary.LittleEndian.Uint64(b[24:]),
	}, nil
}

// MaxModuleEventPayload is the largest event payload a module may publish
// (a PublishEvent command's bytes after its 8-byte header). The engine
// rejects a larger one at playback (bad_length); the Go SDK refuses it at
// once, failing the tick (module.ErrEventTooLarge). The engine's own events
// may be larger: up to a quarter of the event log.
const MaxModuleEventPayload = 4096

// ExitRefused is the exit status of a module process that the engine
// refused for a reason a restart cannot change: a schema or control
// protocol version the engine does not speak, a hello it finds invalid (a
// bad module or group name, tier or period), a peer uid it does not admit.
// It is EX_CONFIG of sysexits.h: the configuration, not the run, is wrong.
// A supervisor that sees it does not restart the module (`engine up` shows
// it as refused); any other non-zero status is a crash, restarted with
// backoff under the circuit breaker. module.MainOptions exits with it when
// module.Refused reports the error of Run.
const ExitRefused = 78
