package host

// Per-module quotas (docs/ARCHITECTURE.md, "Command rings"): a module's
// batches may publish Config.MaxEventBytesPerModule bytes of the event log
// per frame (saved for up to EventBurstFrames frames), and a module may have at most
// Config.MaxEntitiesPerModule live entities it created. The world counts the
// live entities of each owner (world.World.CreateOwned, decremented by
// whoever destroys them). Owner ids are per module name, not per slot, and
// never reused: a dead module's entities stay in the world (the world is the
// simulation's) and keep counting against its name's quota, a restarted
// module of the same name finds them counted, and a module that gets the
// slot of a dead one does not inherit them.

// EventBurstFrames is how many frames of its event quota
// (Config.MaxEventBytesPerModule) a module may save up and publish in one
// frame.
const EventBurstFrames = 4

// overflowOwner is shared by the names beyond the 65534th (all of them
// under one quota).
const overflowOwner = ^uint16(0)

// ownerOf returns the world owner id of the entities module name creates,
// assigning the next one on first use. Called with mu held.
func (e *Engine) ownerOf(name string) uint16 {
	if o, ok := e.owners[name]; ok {
		return o
	}
	if e.owners == nil {
		e.owners = make(map[string]uint16)
	}
	o := overflowOwner
	if n := len(e.owners) + 1; n < int(overflowOwner) {
		o = uint16(n)
	}
	e.owners[name] = o
	return o
}

// ModuleEntities returns, per module name, the live entities the module
// created (its entity quota's count), for every module that has played
// back a batch.
func (e *Engine) ModuleEntities() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.owners))
	for name, o := range e.owners {
		out[name] = e.w.Owned(o)
	}
	return out
}
