package module

// Why the engine rejected a module's commands: the engine counts each
// rejected command by reason into the statistics block of the module's own
// segment (layout/modstats.go), and the module reads it from there
// (View.Stats; Rejections is its commands' part, by reason name); no
// message on the control socket, nothing the module could forge that
// anyone else reads.

import (
	"errors"
	"fmt"

	"github.com/fdp-engine/fdp/layout"
)

// Rejections are the engine's counters of this module's commands in the
// current engine: applied and rejected since the module (under its name)
// joined it, rejected by reason (names as world.RejectReason's String:
// "stale_entity", "unknown_component", ...; only reasons with a count).
// Frame is the frame at which the engine wrote them: the counters cover the
// batches it played back up to then, so the batch of the tick that just
// ended shows in the next tick's Rejections. Compare two reads (Since) for
// what one batch was refused for.
type Rejections struct {
	Frame             uint64
	Applied, Rejected uint64
	ByReason          map[string]uint64
}

// Since returns r minus an earlier read prev: what was applied and
// rejected in between, by reason. A prev of another engine (counters
// lower than prev's) gives r itself.
func (r Rejections) Since(prev Rejections) Rejections {
	if r.Applied < prev.Applied || r.Rejected < prev.Rejected {
		return r
	}
	d := Rejections{Frame: r.Frame, Applied: r.Applied - prev.Applied, Rejected: r.Rejected - prev.Rejected, ByReason: map[string]uint64{}}
	for k, n := range r.ByReason {
		if n > prev.ByReason[k] {
			d.ByReason[k] = n - prev.ByReason[k]
		}
	}
	return d
}

// String renders r as "rejected 3 (stale_entity 2, unknown_component 1) of
// 10", or "rejected 0 of 10".
func (r Rejections) String() string {
	s := fmt.Sprintf("rejected %d", r.Rejected)
	if len(r.ByReason) > 0 {
		s += " ("
		first := true
		for i := range layout.ModStatsReasons {
			name := layout.RejectReasonName(i)
			if n := r.ByReason[name]; n > 0 {
				if !first {
					s += ", "
				}
				s += fmt.Sprintf("%s %d", name, n)
				first = false
			}
		}
		s += ")"
	}
	return s + fmt.Sprintf(" of %d", r.Applied+r.Rejected)
}

// ErrNoRejections: the engine has not written this module's statistics yet
// (it writes them at the end of the frame of the module's first dispatch).
var ErrNoRejections = errors.New("the engine has not written the module's statistics yet")

// Rejections reads the engine's counters of this module's commands from
// the module's own segment (View.Stats), by reason name.
func (v *View) Rejections() (Rejections, error) {
	st, err := v.Stats()
	if errors.Is(err, layout.ErrNoModStats) {
		return Rejections{}, ErrNoRejections
	}
	if err != nil {
		return Rejections{}, err
	}
	r := Rejections{Frame: st.Frame, Applied: st.Applied, Rejected: st.Rejected, ByReason: map[string]uint64{}}
	for i, n := range st.RejectedByReason {
		if n > 0 {
			r.ByReason[layout.RejectReasonName(i)] = n
		}
	}
	return r, nil
}
