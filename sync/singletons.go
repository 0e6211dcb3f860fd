package sync

// Singletons in frame slots (layout/singletons.go): the publisher copies
// every changed singleton into every slot it fills, whatever the fill's
// mask (S1), and a reader takes a singleton whose version word is not 0.

import (
	"fmt"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// fillSingletons copies into slot s, claimed, every singleton whose world
// version is newer than the slot's (S1; the caller sealed the world, so
// every version copied is <= the slot's version). The singleton area is in
// the slot's head, which always holds memory (P2 needs nothing more).
func (p *Publisher) fillSingletons(s int, st *PublishStats) {
	w, b := p.w, p.seg
	for i := range p.lw.Singletons {
		id := world.SingletonID(i)
		vo := p.lw.SingletonVersionOff(s, i)
		wv := w.SingletonVersion(id)
		if wv <= layout.Load64(b, vo) {
			continue
		}
		val, _ := w.SingletonRaw(id) // wv > 0: set
		o, e := p.lw.SingletonRange(s, i)
		st.BytesCopied += copy(b[o:e], val)
		layout.Store64(b, vo, wv)
		st.Singletons++
	}
}

// SingletonBytes returns singleton id of the frame in place (read-only
// shared memory, valid while the frame is pinned or leased: check Valid
// before acting on it); ok is false if the frame's segment has no such
// singleton or it was never set.
func (f *Frame) SingletonBytes(id world.SingletonID) ([]byte, bool) {
	lw := f.r.lw
	if int(id) >= len(lw.Singletons) {
		return nil, false
	}
	// ORDER(seqlock): the version word is part of the frame the pin holds;
	// Valid/Release re-check the seq after the reads.
	if layout.Load64(f.r.world.Data, lw.SingletonVersionOff(f.slot, int(id))) == 0 {
		return nil, false
	}
	o, e := lw.SingletonRange(f.slot, int(id))
	return f.r.world.Data[o:e:e], true
}

// SingletonVersion returns the world version of singleton id's last write
// as the frame holds it (0: never set).
func (f *Frame) SingletonVersion(id world.SingletonID) uint64 {
	if int(id) >= len(f.r.lw.Singletons) {
		return 0
	}
	return layout.Load64(f.r.world.Data, f.r.lw.SingletonVersionOff(f.slot, int(id)))
}

// SingletonName returns the name of singleton id in the segment's singleton
// table ("" if there is none).
func (f *Frame) SingletonName(id world.SingletonID) string {
	if int(id) >= len(f.r.lw.Singletons) {
		return ""
	}
	return f.r.lw.Singletons[id].Name
}

// CheckSingletonType returns an error unless T has the size of singleton id.
func CheckSingletonType[T any](f *Frame, id world.SingletonID) error {
	lw := f.r.lw
	if int(id) >= len(lw.Singletons) {
		return fmt.Errorf("%w: singleton id %d (segment has %d)", world.ErrUnknownSingleton, id, len(lw.Singletons))
	}
	if s := lw.Singletons[id]; uintptr(s.Size) != sizeOf[T]() {
		return fmt.Errorf("%w: singleton %q is %d bytes, Go type is %d", ErrTypeMismatch, s.Name, s.Size, sizeOf[T]())
	}
	return nil
}

// Singleton copies singleton id out of the frame. ok is false if T does not
// have the singleton's size, the segment has no such singleton, or it was
// never set. Every frame and every snapshot holds every singleton: a
// filtered snapshot's mask does not apply to them.
func Singleton[T any](f *Frame, id world.SingletonID) (T, bool) {
	var zero T
	if CheckSingletonType[T](f, id) != nil {
		return zero, false
	}
	b, ok := f.SingletonBytes(id)
	if !ok {
		return zero, false
	}
	return viewColumn[T](b)[0], true
}
