package world

// Singletons: components with exactly one instance per world. They are
// registered apart from components (their own id space, SingletonID), are
// set by the simulation (SetSingleton) or by a module's command
// (CmdSetSingleton; never an engine-owned one such as Time), and every
// publish and every snapshot carries all of them (layout/singletons.go, S1).

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/fdp-engine/fdp/layout"
)

// SingletonID identifies a registered singleton (0..layout.MaxSingletons-1).
type SingletonID uint8

// ErrUnknownSingleton: the singleton (id or Go type) is not registered.
var ErrUnknownSingleton = errors.New("fdp/world: unknown singleton")

// SingletonInfo describes a registered singleton.
type SingletonInfo struct {
	ID          SingletonID
	Name        string
	Size        int
	Align       int
	Fingerprint uint64
	Type        reflect.Type
	// EngineOwned: only the engine sets it (World.SetSingleton); a
	// module's command that sets it is rejected (RejectEngineOwned).
	EngineOwned bool
	// Fields describe the value's bytes (Fields).
	Fields []layout.FieldDesc
}

// Desc returns the layout descriptor of the singleton.
func (s SingletonInfo) Desc() layout.SingletonDesc {
	d := layout.SingletonDesc{Name: s.Name, Size: uint32(s.Size), Align: uint32(s.Align), Fingerprint: s.Fingerprint, Fields: s.Fields}
	if s.EngineOwned {
		d.Flags |= layout.SingletonEngineOwned
	}
	return d
}

// Time is the engine's time singleton (RegisterTime): the frame being
// simulated, the simulation time at its end and the step that led to it.
// The engine sets it at the start of every frame, before the simulation
// runs; commands cannot set it.
type Time struct {
	Frame uint64 // the frame number (the frame a module's view shows)
	Nanos int64  // simulation time, ns: the sum of every frame's Dt
	Dt    int64  // this frame's step, ns: the frame period × Scale
	// Scale is the engine's speed (`engine ctl INSTANCE speed X`, 0.001 ≤ X ≤
	// 64; 1 by default): a live engine keeps its frame rate and steps
	// Dt = period × Scale, so simulation time runs Scale times as fast.
	Scale float64
	// Paused is 1 when the frame was run by a step of a paused engine
	// (`engine ctl INSTANCE step N`), else 0. A paused engine publishes
	// nothing, so no frame says "paused" but the steps.
	Paused uint32
	// Reserved is 0.
	Reserved uint32
}

// TimeName is the name RegisterTime registers Time under.
const TimeName = "Time"

// RegisterTime registers the engine's time singleton (Time, engine-owned).
// A world whose registry has it gets it set by the engine every frame
// (host.Engine).
func RegisterTime(r *Registry) (SingletonID, error) {
	return r.registerSingleton(reflect.TypeFor[Time](), TimeName, true)
}

// RegisterSingleton adds singleton type T under name and returns its id.
// T follows Register's rules (pointer-free, fixed size, at most
// layout.MaxComponentSize bytes); names and types are unique among
// singletons (a type may also be a component), at most
// layout.MaxSingletons, before the registry is frozen by New.
func RegisterSingleton[T any](r *Registry, name string) (SingletonID, error) {
	return r.registerSingleton(reflect.TypeFor[T](), name, false)
}

func (r *Registry) registerSingleton(t reflect.Type, name string, engine bool) (SingletonID, error) {
	fail := func(format string, a ...any) (SingletonID, error) {
		return 0, &registrationError{fmt.Sprintf("fdp/world: singleton %q: ", name) + fmt.Sprintf(format, a...)}
	}
	switch {
	case r.frozen:
		return fail("registry is frozen (a world was already created from it)")
	case name == "" || len(name) >= layout.ComponentNameLen || !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0:
		return fail("name must be 1..%d bytes of UTF-8 without NUL", layout.ComponentNameLen-1)
	case len(r.singles) >= layout.MaxSingletons:
		return fail("too many singletons: %d are registered, the cap is %d (layout.MaxSingletons)", len(r.singles), layout.MaxSingletons)
	}
	if _, dup := r.singleByName[name]; dup {
		return fail("name already registered")
	}
	if id, dup := r.singleByType[t]; dup {
		return fail("type %v already registered as %q", t, r.singles[id].Name)
	}
	if err := checkKind(t, ""); err != nil {
		return fail("%v; singletons must be pointer-free fixed-size types", err)
	}
	if t.Size() == 0 || t.Size() > layout.MaxComponentSize {
		return fail("type %v is %d bytes (1..%d)", t, t.Size(), layout.MaxComponentSize)
	}
	fields, err := Fields(t)
	if err != nil {
		return fail("%v", err)
	}
	id := SingletonID(len(r.singles))
	r.singles = append(r.singles, SingletonInfo{ID: id, Name: name, Size: int(t.Size()), Align: t.Align(), Fields: fields,
		Fingerprint: layout.FieldsFingerprint(uint32(t.Size()), uint32(t.Align()), fields), Type: t, EngineOwned: engine})
	r.singleByName[name] = id
	r.singleByType[t] = id
	return id, nil
}

// SingletonOf returns the id under which singleton type T is registered.
func SingletonOf[T any](r *Registry) (SingletonID, bool) {
	id, ok := r.singleByType[reflect.TypeFor[T]()]
	return id, ok
}

// LookupSingleton returns the id of the singleton registered under name.
func (r *Registry) LookupSingleton(name string) (SingletonID, bool) {
	id, ok := r.singleByName[name]
	return id, ok
}

// Singleton returns the description of singleton id (ok false if unknown).
func (r *Registry) Singleton(id SingletonID) (SingletonInfo, bool) {
	if int(id) >= len(r.singles) {
		return SingletonInfo{}, false
	}
	return r.singles[id], true
}

// NumSingletons returns the number of registered singletons.
func (r *Registry) NumSingletons() int { return len(r.singles) }

// Singletons returns the layout descriptors of the singletons in id order.
func (r *Registry) Singletons() []layout.SingletonDesc {
	out := make([]layout.SingletonDesc, len(r.singles))
	for i, s := range r.singles {
		out[i] = s.Desc()
	}
	return out
}

// singleton is a singleton's value in the world: size bytes backed by
// []uint64 (8-byte aligned), and the version of its last write (0: never
// set).
type singleton struct {
	val []byte
	ver uint64
}

func (w *World) initSingletons() {
	w.singles = make([]singleton, len(w.reg.singles))
	for i, s := range w.reg.singles {
		w.singles[i].val = castSlice[uint64, byte](make([]uint64, (s.Size+7)/8))[:s.Size:s.Size]
	}
}

// NumSingletons returns the number of the world's singletons.
func (w *World) NumSingletons() int { return len(w.singles) }

// SetSingletonRaw sets singleton id from its raw bytes and stamps its
// version. len(data) must be the singleton's size (ErrSize).
func (w *World) SetSingletonRaw(id SingletonID, data []byte) error {
	if int(id) >= len(w.singles) {
		return fmt.Errorf("%w: id %d", ErrUnknownSingleton, id)
	}
	s := &w.singles[id]
	if len(data) != len(s.val) {
		return ErrSize
	}
	copy(s.val, data)
	s.ver = w.version
	return nil
}

// SingletonRaw returns the bytes of singleton id, read-only: valid until
// it is next set. ok is false if id is unknown or was never set.
func (w *World) SingletonRaw(id SingletonID) ([]byte, bool) {
	if int(id) >= len(w.singles) || w.singles[id].ver == 0 {
		return nil, false
	}
	return w.singles[id].val, true
}

// SingletonVersion returns the version of singleton id's last write (0:
// never set, or unknown).
func (w *World) SingletonVersion(id SingletonID) uint64 {
	if int(id) >= len(w.singles) {
		return 0
	}
	return w.singles[id].ver
}

// SetSingleton sets the singleton registered with type T (ErrUnknownSingleton
// if T is not registered as one).
func SetSingleton[T any](w *World, v T) error {
	id, ok := SingletonOf[T](w.reg)
	if !ok {
		return fmt.Errorf("%w: type %v", ErrUnknownSingleton, reflect.TypeFor[T]())
	}
	s := &w.singles[id]
	castSlice[byte, T](s.val)[0] = v
	s.ver = w.version
	return nil
}

// GetSingleton returns the singleton registered with type T; ok is false if
// T is not registered as one or it was never set.
func GetSingleton[T any](w *World) (T, bool) {
	var zero T
	id, ok := SingletonOf[T](w.reg)
	if !ok || w.singles[id].ver == 0 {
		return zero, false
	}
	return castSlice[byte, T](w.singles[id].val)[0], true
}

// RestoreSingleton replaces singleton id's bytes and version (engine
// recovery; version 0 leaves it unset).
func (w *World) RestoreSingleton(id SingletonID, data []byte, version uint64) error {
	if int(id) >= len(w.singles) {
		return fmt.Errorf("%w: %w: %d", ErrRestore, ErrUnknownSingleton, id)
	}
	s := &w.singles[id]
	if len(data) != len(s.val) {
		return fmt.Errorf("%w: %w: singleton of %d bytes, want %d", ErrRestore, ErrSize, len(data), len(s.val))
	}
	copy(s.val, data)
	s.ver = version
	return nil
}
