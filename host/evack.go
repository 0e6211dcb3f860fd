package host

// Event acknowledgements: the event cursor a module's committed batch
// acknowledged, kept by the engine across the module's restarts.

import "github.com/fdp-engine/fdp/layout"

// writeEventAck writes m's acknowledged event cursor into its (new)
// segment's event line, before the welcome.
func (e *Engine) writeEventAck(m *Module) {
	layout.Store64(m.seg.Data, layout.OffMAckSeq, m.evAck.Seq)
	layout.Store64(m.seg.Data, layout.OffMAckPos, m.evAck.Pos)
}
