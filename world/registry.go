package world

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/fdp-engine/fdp/layout"
)

// ErrRegistry matches (errors.Is) every registration error.
var ErrRegistry = errors.New("fdp/world: invalid component registration")

// registrationError is a registration error: its text names the component
// and the reason, and it matches ErrRegistry.
type registrationError struct{ msg string }

func (e *registrationError) Error() string        { return e.msg }
func (e *registrationError) Is(target error) bool { return target == ErrRegistry }

// ComponentInfo describes a registered component.
type ComponentInfo struct {
	ID          ComponentID
	Name        string
	Size        int
	Align       int
	Fingerprint uint64
	Type        reflect.Type // nil for a variable-size component
	// Kind, MaxLen and PerEntity describe a variable-size component
	// (RegisterBytes; Size is then its handle's); KindFixed and 0 otherwise.
	Kind              ComponentKind
	MaxLen, PerEntity int
	// Fields describe the value's bytes (Fields; layout/fields.go): the
	// fingerprint is computed from them.
	Fields []layout.FieldDesc
}

// Desc returns the layout descriptor of the component.
func (c ComponentInfo) Desc() layout.ComponentDesc {
	return layout.ComponentDesc{Name: c.Name, Size: uint32(c.Size), Align: uint32(c.Align), Fingerprint: c.Fingerprint,
		MaxLen: uint32(c.MaxLen), PerEntity: uint32(c.PerEntity), Fields: c.Fields}
}

// Registry holds the component types of a world. Register components in a
// fixed order in every process: ids are assigned in registration order and
// the schema hash depends on it. A registry is frozen (no more Register)
// once a World has been created from it. It is not safe for concurrent
// registration.
type Registry struct {
	infos  []ComponentInfo
	byName map[string]ComponentID
	byType map[reflect.Type]ComponentID
	// Singletons (singletons.go): their own id space.
	singles      []SingletonInfo
	singleByName map[string]SingletonID
	singleByType map[reflect.Type]SingletonID
	frozen       bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: map[string]ComponentID{}, byType: map[reflect.Type]ComponentID{},
		singleByName: map[string]SingletonID{}, singleByType: map[reflect.Type]SingletonID{}}
}

// Register adds component type T under name and returns its id. T must be
// pointer-free and of fixed size: bool, integers, floats, complex numbers,
// and arrays and structs of those. Pointers, slices, maps, strings,
// interfaces, channels, funcs, unsafe.Pointer and uintptr are rejected (with
// the path of the offending field), as are zero-size types, types larger
// than layout.MaxComponentSize, duplicate names or types, more than
// layout.MaxComponents components, and registration after the registry was
// frozen by New.
func Register[T any](r *Registry, name string) (ComponentID, error) {
	return r.register(reflect.TypeFor[T](), name)
}

// RegisterType is Register for a type known only at run time (a schema
// built from configuration, or a test that needs hundreds of distinct
// component types): the same checks, the same errors.
func RegisterType(r *Registry, t reflect.Type, name string) (ComponentID, error) {
	if t == nil {
		return 0, &registrationError{fmt.Sprintf("fdp/world: component %q: nil type", name)}
	}
	return r.register(t, name)
}

func (r *Registry) register(t reflect.Type, name string) (ComponentID, error) {
	fail := func(format string, a ...any) (ComponentID, error) {
		return 0, &registrationError{fmt.Sprintf("fdp/world: component %q: ", name) + fmt.Sprintf(format, a...)}
	}
	if err := r.check(name); err != nil {
		return 0, err
	}
	if id, dup := r.byType[t]; dup {
		return fail("type %v already registered as %q", t, r.infos[id].Name)
	}
	if err := checkKind(t, ""); err != nil {
		return fail("%v; components must be pointer-free fixed-size types", err)
	}
	if t.Size() == 0 {
		return fail("type %v has size 0; components must have a non-zero size", t)
	}
	if t.Size() > layout.MaxComponentSize {
		return fail("type %v is %d bytes (max %d)", t, t.Size(), layout.MaxComponentSize)
	}
	fields, err := Fields(t)
	if err != nil {
		return fail("%v", err)
	}
	id := r.add(ComponentInfo{Name: name, Size: int(t.Size()), Align: t.Align(), Type: t, Fields: fields,
		Fingerprint: layout.FieldsFingerprint(uint32(t.Size()), uint32(t.Align()), fields)})
	r.byType[t] = id
	return id, nil
}

// check makes the checks every component registration shares: the
// registry is not frozen, the name is valid and new, and the cap.
func (r *Registry) check(name string) error {
	fail := func(format string, a ...any) error {
		return &registrationError{fmt.Sprintf("fdp/world: component %q: ", name) + fmt.Sprintf(format, a...)}
	}
	if r.frozen {
		return fail("registry is frozen (a world was already created from it)")
	}
	if name == "" || len(name) >= layout.ComponentNameLen || !utf8.ValidString(name) || strings.IndexByte(name, 0) >= 0 {
		return fail("name must be 1..%d bytes of UTF-8 without NUL", layout.ComponentNameLen-1)
	}
	if _, dup := r.byName[name]; dup {
		return fail("name already registered")
	}
	if len(r.infos) >= layout.MaxComponents {
		return fail("too many components: %d are registered, the cap is %d (layout.MaxComponents)", len(r.infos), layout.MaxComponents)
	}
	return nil
}

// add appends component c (checked) and returns its id.
func (r *Registry) add(c ComponentInfo) ComponentID {
	c.ID = ComponentID(len(r.infos))
	r.infos = append(r.infos, c)
	r.byName[c.Name] = c.ID
	return c.ID
}

// kindNames names the rejected kinds in error messages.
var kindNames = map[reflect.Kind]string{
	reflect.Pointer:       "a pointer",
	reflect.Slice:         "a slice",
	reflect.Map:           "a map",
	reflect.String:        "a string",
	reflect.Interface:     "an interface",
	reflect.Chan:          "a channel",
	reflect.Func:          "a func",
	reflect.UnsafePointer: "an unsafe.Pointer",
	reflect.Uintptr:       "a uintptr",
}

// checkKind walks t and returns an error naming the first field (path
// relative to the component type, e.g. "Foo.Bar" or "Arr[]") whose kind is
// not allowed in a component.
func checkKind(t reflect.Type, path string) error {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return nil
	case reflect.Array:
		return checkKind(t.Elem(), path+"[]")
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			if err := checkKind(f.Type, p); err != nil {
				return err
			}
		}
		return nil
	}
	what := kindNames[t.Kind()]
	if what == "" {
		what = "a " + t.Kind().String()
	}
	if path == "" {
		return fmt.Errorf("type %v is %s", t, what)
	}
	return fmt.Errorf("field %s is %s", path, what)
}

// ID returns the id under which type T is registered.
func ID[T any](r *Registry) (ComponentID, bool) {
	id, ok := r.byType[reflect.TypeFor[T]()]
	return id, ok
}

// Lookup returns the id of the component registered under name.
func (r *Registry) Lookup(name string) (ComponentID, bool) {
	id, ok := r.byName[name]
	return id, ok
}

// Info returns the description of component id (ok false if unknown).
func (r *Registry) Info(id ComponentID) (ComponentInfo, bool) {
	if int(id) >= len(r.infos) {
		return ComponentInfo{}, false
	}
	return r.infos[id], true
}

// Len returns the number of registered components.
func (r *Registry) Len() int { return len(r.infos) }

// Frozen reports whether a world was created from the registry.
func (r *Registry) Frozen() bool { return r.frozen }

// Components returns the layout descriptors of the components in id order.
func (r *Registry) Components() []layout.ComponentDesc {
	out := make([]layout.ComponentDesc, len(r.infos))
	for i, c := range r.infos {
		out[i] = c.Desc()
	}
	return out
}

// SchemaHash returns layout.SchemaHashOf the components and singletons.
func (r *Registry) SchemaHash() uint64 { return layout.SchemaHashOf(r.Components(), r.Singletons()) }

// Mask returns the mask of every registered component.
func (r *Registry) Mask() Mask { return maskUpTo(len(r.infos)) }
