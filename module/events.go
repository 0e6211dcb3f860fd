package module

// A module's events: what View.Events delivers in a tick, and the
// temporary ids the engine resolved for it.

import (
	"encoding/binary"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Events delivers every event published since this module's previous call
// (typically: since its last run), in order. overrun > 0 reports events lost
// because the module fell more than the event log's capacity behind; it is
// never silent. Engine-internal events (temporary-id mappings) are consumed
// here and exposed through Created.
func (v *View) Events(fn func(seq, frame uint64, typ uint16, payload []byte)) (overrun uint64, err error) {
	v.created = v.created[:0]
	return v.events.Read(&v.cursor, func(seq, frame uint64, typ uint16, payload []byte) {
		if typ == layout.SystemEventCreated {
			if len(payload) == layout.SystemEventCreatedSize && binary.LittleEndian.Uint32(payload) == v.slot {
				v.created = append(v.created, world.TempMapping{
					Temp:   binary.LittleEndian.Uint32(payload[4:]),
					Entity: world.Entity(binary.LittleEndian.Uint64(payload[8:])),
				})
			}
			return
		}
		if fn != nil {
			fn(seq, frame, typ, payload)
		}
	})
}

// Created returns the temporary ids of this module resolved by the engine,
// as seen by the last Events call.
func (v *View) Created() []world.TempMapping { return v.created }
