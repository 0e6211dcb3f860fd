package module

// A tick's commands: the batch a module queues for the engine, committed
// at the end of the tick or dropped whole.

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// Commands queues commands for the engine. They become visible to the engine
// only when the tick returns without error (one commit per tick); a module
// that dies mid-tick leaves nothing.
type Commands struct {
	p        *ipc.Producer
	reg      *world.Registry // singletons by Go type, component kinds
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

// ErrEventTooLarge is the error of a tick that published an event payload
// above layout.MaxModuleEventPayload (the engine would reject it): the
// tick's batch is dropped.
var ErrEventTooLarge = errors.New("fdp/module: event payload too large")

// Publish queues an event. A payload above layout.MaxModuleEventPayload
// (4096 bytes) fails the tick (Err: ErrEventTooLarge).
func (c *Commands) Publish(typ uint16, payload []byte) {
	if len(payload) > layout.MaxModuleEventPayload {
		if c.err == nil {
			c.err = fmt.Errorf("%w: %d bytes, at most %d", ErrEventTooLarge, len(payload), layout.MaxModuleEventPayload)
		}
		return
	}
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
