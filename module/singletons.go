package module

// Singletons in the SDK: read from the view's frame by Go type, set through
// a command; and the module's own statistics, where the engine counts the
// commands it rejected by reason.

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/fdp-engine/fdp/layout"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// ErrNotSingleton is the error of a tick that read or set a singleton by a
// Go type its registry does not have as a singleton.
var ErrNotSingleton = errors.New("fdp/module: not a registered singleton")

// Singleton returns the singleton registered with type T (world.
// RegisterSingleton; world.Time with world.RegisterTime) as the view's
// frame holds it. Every frame and every snapshot holds every singleton, so
// a module reads any singleton whatever its Spec.Reads. ok is false when it
// was never set; a T the registry does not have as a singleton also fails
// the tick (ErrNotRead wrapping ErrNotSingleton). The value is a copy.
func Singleton[T any](v *View) (T, bool) {
	var zero T
	id, ok := world.SingletonOf[T](v.reg)
	if !ok {
		v.fail(fmt.Errorf("%w: %w: %v", ErrNotRead, ErrNotSingleton, reflect.TypeFor[T]()))
		return zero, false
	}
	if !v.typeFits(fsync.CheckSingletonType[T](v.f, id)) {
		return zero, false
	}
	return fsync.Singleton[T](v.f, id)
}

// SetSingleton queues setting the singleton registered with type T to val.
// The engine rejects it (counted by reason in the module's statistics,
// View.Stats) for an engine-owned singleton such as world.Time
// (engine_owned); a T the registry does not have as a singleton fails the
// tick (Commands.Err: ErrNotSingleton).
func SetSingleton[T any](c *Commands, val T) {
	id, ok := world.SingletonOf[T](c.reg)
	if !ok {
		if c.err == nil {
			c.err = fmt.Errorf("%w: %v", ErrNotSingleton, reflect.TypeFor[T]())
		}
		return
	}
	src := valueBytes(&val)
	if b := c.reserve(world.CmdSetSingleton, world.CmdSingletonHdr+len(src)); b != nil {
		world.EncodeSingletonHdr(b, id)
		copy(b[world.CmdSingletonHdr:], src)
	}
}

// Stats returns the engine's statistics of this module as the engine last
// wrote them into the module's own segment (docs/LAYOUT.md, "Statistics
// block"): among them the commands it applied and those it rejected, by
// reason (RejectedByReason, indexed by world.RejectReason). The engine
// writes them at the end of the frame in which it played a batch back, so
// a tick sees its earlier ticks' results.
func (v *View) Stats() (layout.ModStats, error) {
	if v.mod == nil {
		return layout.ModStats{}, errors.New("fdp/module: the view has no module segment")
	}
	st, _, err := layout.DecodeModStats(v.mod)
	return st, err
}

// fail records the tick's first read error.
func (v *View) fail(err error) {
	if v.err == nil {
		v.err = err
	}
}
