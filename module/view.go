package module

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fdp-engine/fdp/ipc"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// View is the module's read-only view of one frame (the latest for the fast
// tier, the leased snapshot for the slow tier). It is valid only during Tick.
//
// What a module reads is exactly what it asked for: the View reads only the
// components of the module's Spec.Reads (all of them when Reads is empty)
// that the frame holds (a slow module's snapshot holds its convoy's Reads,
// the latest frame every component). Column, Get, Query and Count of any
// other component return nil, false or nothing, never bytes of another
// frame, and fail the tick with an ErrNotRead error naming the component.
type View struct {
	f       *fsync.Frame
	events  *ipc.EventReader
	cursor  ipc.EventCursor
	slot    uint32
	created []world.TempMapping
	// reads is the module's declared Reads (Spec.Reads, filled with every
	// component of the registry when the module declares none; 0 here is
	// read the same way): the View refuses every other component, on both
	// tiers.
	reads world.Mask
	// since is the version world.Changed terms start at: the frame version
	// of the module's previous successful tick with this engine, plus one
	// (every later write stamps at least that: world.World.Seal); 0, every
	// chunk, before the first. lastFrame is that tick's frame. Both are
	// set only after a tick committed (session.runTick) and reset with the
	// View when the module rejoins another engine, whose versions are not
	// comparable.
	since, lastFrame uint64
	// reg is the module's registry (singletons by Go type); mod its own
	// segment (View.Stats).
	reg *world.Registry
	mod []byte
	// err is the first read error of the running tick (a read outside the
	// module's declared Reads, ...): the tick fails with it even when Tick
	// returns nil, since what it computed used data it did not have.
	err error
	// obs are the module's lifecycle observers, sub its lifecycle
	// subscription, buf the tick's events read for the observers
	// (lifecycle.go).
	obs *Observers
	sub world.Lifecycle
	buf eventBuf
}

// ErrNotRead is the error of a tick that read a component outside the
// module's Spec.Reads, or outside the frame it was given (View.Err).
var ErrNotRead = errors.New("read refused")

// Err returns the first read error of the running tick.
func (v *View) Err() error { return v.err }

// Frame returns the frame number the view shows.
func (v *View) Frame() uint64 { return v.f.Number() }

// Valid reports whether the view's frame is still the one the tick began
// on: everything read from it before a true Valid is consistent. The SDK
// checks it after Tick (a frame taken back meanwhile, a revoked snapshot or
// a pin the engine stopped honouring, fails the tick and drops its
// commands); a module that acts on what it read inside the tick, outside
// its commands (a log line, a message to another system), checks it first.
func (v *View) Valid() bool { return v.f.Valid() }

// Readable returns the components the view lets the module read: its
// declared Reads that the frame holds.
func (v *View) Readable() world.Mask { return v.declared().And(v.f.Mask()) }

// declared is the module's Reads, every component when empty.
func (v *View) declared() world.Mask {
	if v.reads.Empty() {
		return world.MaskAll()
	}
	return v.reads
}

// readable reports whether the view may read every component of mask; if
// not, it records the tick's first read error (ErrNotRead).
func (v *View) readable(mask world.Mask) bool {
	if mask.AndNot(v.declared()).Empty() && v.f.Covers(mask) {
		return true
	}
	if v.err == nil {
		v.err = v.refusal(mask)
	}
	return false
}

// typeFits reports whether err (fsync.CheckType's: the Go type does not
// have the component's size, or the id is unknown) is nil; if not, it
// records the tick's first read error: a module reading a component as the
// wrong type computes nothing meaningful, so its tick fails.
func (v *View) typeFits(err error) bool {
	if err == nil {
		return true
	}
	if v.err == nil {
		v.err = fmt.Errorf("%w: %w", ErrNotRead, err)
	}
	return false
}

// refusal builds the one-line error for a read of mask: the components
// outside the module's Reads, else those outside the frame's mask.
func (v *View) refusal(mask world.Mask) error {
	if out := mask.AndNot(v.declared()); !out.Empty() {
		return fmt.Errorf("%w: %s not in the module's Reads %s", ErrNotRead, v.quoted(out), v.names(v.declared()))
	}
	out := mask.AndNot(v.f.Mask())
	return fmt.Errorf("%w: %s not in frame %d, which holds %s (the module's Reads %s)",
		ErrNotRead, v.quoted(out), v.f.Number(), v.names(v.f.Mask()), v.names(v.declared()))
}

// quoted names the components of m: `component "Pos" is` or
// `components "Pos", "Vel" are`.
func (v *View) quoted(m world.Mask) string {
	var b strings.Builder
	n := 0
	for id := range m.IDs() {
		if n > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", v.name(id))
		n++
	}
	if n == 1 {
		return "component " + b.String() + " is"
	}
	return "components " + b.String() + " are"
}

// names lists the components of m that the frame's segment has, e.g.
// "[Pos HP]".
func (v *View) names(m world.Mask) string {
	var out []string
	for id := range m.And(v.f.Schema()).IDs() {
		out = append(out, v.name(id))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// name is the registry name of component id (the segment's component
// table, which the module's reader checked against its registry).
func (v *View) name(id world.ComponentID) string {
	if n := v.f.ComponentName(id); n != "" {
		return n
	}
	return fmt.Sprintf("#%d", id)
}

// Query is a query over the view's frame (View.Query): a value, iterated
// chunk by chunk without allocating.
type Query = fsync.FrameQuery

// Query iterates the chunks with entities having every component of with
// and matching terms, the query language of package world:
//
//	q := v.Query(world.MaskOf(pos, vel), world.Without(dead), world.Optional(tag), world.Changed(pos))
//
// world.Without excludes entities having a component; world.Optional
// components are read where present (Column is nil in a chunk where no alive
// entity has them; test rows with q.Has); world.Changed keeps only the chunks
// whose change version of one of its components moved since the frame of
// the module's previous successful tick (LastTick). Changed is chunk
// granular: a chunk any row of which was written (or created, destroyed,
// given or stripped of the component) is kept whole, and a chunk that no
// longer has a matching entity is not visited. A failed tick does not move
// the mark, so the next tick sees everything since the last successful one;
// on the first tick of the process, and the first after an engine restart,
// every chunk counts as changed. A query naming a component outside what the
// view may read (Readable), in any term, matches nothing and fails the tick
// (ErrNotRead).
func (v *View) Query(with world.Mask, terms ...world.Term) Query {
	flt := world.NewFilter(with, terms...).DefaultSince(v.since)
	if !v.readable(flt.Names()) {
		return Query{}
	}
	return v.f.QueryFilter(flt)
}

// LastTick returns the frame of the module's previous successful tick with
// this engine, the mark of world.Changed: ok is false on the first tick of
// the process and the first after an engine restart.
func (v *View) LastTick() (frame uint64, ok bool) { return v.lastFrame, v.since != 0 }

// Column returns component id of the query's current chunk as a []T read in
// place (read-only memory: writing into it is a module error). It returns
// nil for an Optional component of the query that no alive entity of the
// chunk has, and nil, failing the tick (ErrNotRead), for a component the
// view may not read (Readable) or a T whose size is not the component's.
func Column[T any](v *View, q *Query, id world.ComponentID) []T {
	if !v.readable(world.MaskOf(id)) || !v.typeFits(fsync.CheckType[T](v.f, id)) || q.Absent(id) {
		return nil
	}
	return fsync.Column[T](v.f, q.Chunk(), id)
}

// Get copies component id of entity e out of the view. It returns false,
// and fails the tick (ErrNotRead), for a component the view may not read
// (Readable) or a T whose size is not the component's.
func Get[T any](v *View, e world.Entity, id world.ComponentID) (T, bool) {
	if !v.readable(world.MaskOf(id)) || !v.typeFits(fsync.CheckType[T](v.f, id)) {
		var zero T
		return zero, false
	}
	return fsync.Get[T](v.f, e, id)
}

// IsAlive reports whether e is alive in the view's frame.
func (v *View) IsAlive(e world.Entity) bool { return v.f.IsAlive(e) }

// Count counts the entities having every component of with and matching
// terms (View.Query): 0, failing the tick (ErrNotRead), for a query naming
// a component outside what the view may read (Readable).
func (v *View) Count(with world.Mask, terms ...world.Term) int {
	q := v.Query(with, terms...)
	return q.Count()
}
