package world

// Owners: which module created a live entity, so that the engine can bound
// the live entities each module created (Playback.MaxEntities) whoever
// destroys them. An owner is a small number (the engine uses a module's slot
// + 1); 0 is nobody (the simulation, a restore). The cost is one uint16 per
// entity index, allocated on the first owned create, and one branch in
// Destroy.

// NoOwner is the owner of entities created by World.Create.
const NoOwner uint16 = 0

// CreateOwned is Create for owner: the entity counts in Owned(owner) until
// it is destroyed, by anyone.
func (w *World) CreateOwned(owner uint16) (Entity, error) {
	e, err := w.Create()
	if err != nil || owner == NoOwner {
		return e, err
	}
	idx := int(e.Index())
	if idx >= len(w.owner) {
		n := max(2*len(w.owner), idx+1, 1024)
		w.owner = append(w.owner, make([]uint16, min(n, w.MaxEntities())-len(w.owner))...)
	}
	if int(owner) >= len(w.owned) {
		w.owned = append(w.owned, make([]int, int(owner)+1-len(w.owned))...)
	}
	w.owner[idx] = owner
	w.owned[owner]++
	return e, nil
}

// Owned returns how many live entities owner created (CreateOwned).
func (w *World) Owned(owner uint16) int {
	if owner == NoOwner || int(owner) >= len(w.owned) {
		return 0
	}
	return w.owned[owner]
}

// Owner returns the owner of a live entity (NoOwner if it has none or is
// not alive).
func (w *World) Owner(e Entity) uint16 {
	if !w.IsAlive(e) || int(e.Index()) >= len(w.owner) {
		return NoOwner
	}
	return w.owner[e.Index()]
}

// disown forgets the owner of entity index idx (it was destroyed).
func (w *World) disown(idx uint32) {
	if int(idx) < len(w.owner) {
		if o := w.owner[idx]; o != NoOwner {
			w.owned[o]--
			w.owner[idx] = NoOwner
		}
	}
}

// resetOwners forgets every owner (a restore rebuilds the world: owners are
// not part of a published frame).
func (w *World) resetOwners() {
	clear(w.owner)
	clear(w.owned)
}
