package module

import (
	"errors"
	"unsafe"

	"github.com/fdp-engine/fdp/ipc"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// View is the module's read-only view of one frame (the latest for the fast
// tier, the leased snapshot for the slow tier). It is valid only during Tick.
type View struct {
	f       *fsync.Frame
	events  *ipc.EventReader
	cursor  ipc.EventCursor
	slot    uint32
	created []world.TempMapping
	// err is the first read error of the running tick (a read outside the
	// module's declared Reads, ...): the tick fails with it even when Tick
	// returns nil, since what it computed used data it did not have.
	err error
}

// Err returns the first read error of the running tick.
func (v *View) Err() error { return v.err }

// Frame returns the frame number the view shows.
func (v *View) Frame() uint64 { return v.f.Number() }

// Query iterates the chunks with entities having every component of mask.
func (v *View) Query(mask world.Mask) fsync.FrameQuery { return v.f.Query(mask) }

// Column returns component id of the query's current chunk as a []T read in
// place (read-only memory: writing into it is a module error).
func Column[T any](v *View, q *fsync.FrameQuery, id world.ComponentID) []T {
	return fsync.Column[T](v.f, q.Chunk(), id)
}

// Get copies component id of entity e out of the view.
func Get[T any](v *View, e world.Entity, id world.ComponentID) (T, bool) {
	return fsync.Get[T](v.f, e, id)
}

// IsAlive reports whether e is alive in the view's frame.
func (v *View) IsAlive(e world.Entity) bool { return v.f.IsAlive(e) }

// Count counts the entities having every component of mask.
func (v *View) Count(mask world.Mask) int { return v.f.Count(mask) }

// Commands queues commands for the engine. They become visible to the engine
// only when the tick returns without error (one commit per tick); a module
// that dies mid-tick leaves nothing.
type Commands struct {
	p        *ipc.Producer
	nextTemp uint32
	err      error
	n        int
}

// ErrCommandsFull is returned by Err when the ring filled during the tick;
// the whole tick's batch is then dropped (never half applied).
var ErrCommandsFull = errors.New("fdp/module: command ring full; the tick's batch was dropped")

func (c *Commands) begin() { c.err, c.n = nil, 0 }

// Err returns the first error of this tick.
func (c *Commands) Err() error { return c.err }

// Len returns the number of commands queued this tick.
func (c *Commands) Len() int { return c.n }

func (c *Commands) reserve(typ uint16, n int) []byte {
	if c.err != nil {
		return nil
	}
	b, err := c.p.Reserve(typ, n)
	if err != nil {
		if errors.Is(err, ipc.ErrRingFull) {
			err = ErrCommandsFull
		}
		c.err = err
		return nil
	}
	c.n++
	return b
}

// Create queues the creation of an entity and returns its temporary handle,
// usable by later commands of the same tick. The real entity is reported
// through View.Created at a later tick.
func (c *Commands) Create() world.Entity {
	c.nextTemp++
	t := c.nextTemp
	if b := c.reserve(world.CmdCreate, world.CmdCreateSize); b != nil {
		world.EncodeCreate(b, t)
	}
	return world.TempEntity(t)
}

// Destroy queues the destruction of e.
func (c *Commands) Destroy(e world.Entity) {
	if b := c.reserve(world.CmdDestroy, world.CmdRefSize); b != nil {
		world.EncodeRef(b, e)
	}
}

// Add queues adding component id (zero value) to e.
func (c *Commands) Add(e world.Entity, id world.ComponentID) {
	if b := c.reserve(world.CmdAdd, world.CmdCompHdr); b != nil {
		world.EncodeComp(b, e, id)
	}
}

// Remove queues removing component id from e.
func (c *Commands) Remove(e world.Entity, id world.ComponentID) {
	if b := c.reserve(world.CmdRemove, world.CmdCompHdr); b != nil {
		world.EncodeComp(b, e, id)
	}
}

// Publish queues an event.
func (c *Commands) Publish(typ uint16, payload []byte) {
	if b := c.reserve(world.CmdEvent, world.CmdEventHdr+len(payload)); b != nil {
		world.EncodeEventHdr(b, world.EventType(typ))
		copy(b[world.CmdEventHdr:], payload)
	}
}

// Set queues setting component id of e to v (adding it if absent).
func Set[T any](c *Commands, e world.Entity, id world.ComponentID, v T) {
	src := valueBytes(&v)
	if b := c.reserve(world.CmdSet, world.CmdCompHdr+len(src)); b != nil {
		world.EncodeComp(b, e, id)
		copy(b[world.CmdCompHdr:], src)
	}
}

// valueBytes views a component value as its bytes.
//
// Invariants: v points to a live value of a pointer-free component type (the
// engine validates the size against its registry at playback), and the
// returned slice is only copied from before v goes out of scope.
func valueBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}
