package world

// The self-describing schema (layout/fields.go): the registry derives the
// field description of every component and singleton type by reflection,
// and the type's fingerprint is layout.FieldsFingerprint of that
// description, so a reader in any language can verify what it decodes.

import (
	"fmt"
	"reflect"

	"github.com/fdp-engine/fdp/layout"
)

// scalarTypes maps the kinds a component may hold to their field types
// (int and uint are 64-bit on every platform FDP supports).
var scalarTypes = map[reflect.Kind]layout.FieldType{
	reflect.Uint8: layout.FieldU8, reflect.Int8: layout.FieldI8, reflect.Uint16: layout.FieldU16, reflect.Int16: layout.FieldI16,
	reflect.Uint32: layout.FieldU32, reflect.Int32: layout.FieldI32, reflect.Uint64: layout.FieldU64, reflect.Int64: layout.FieldI64,
	reflect.Uint: layout.FieldU64, reflect.Int: layout.FieldI64, reflect.Float32: layout.FieldF32, reflect.Float64: layout.FieldF64,
	reflect.Bool: layout.FieldBool, reflect.Complex64: layout.FieldC64, reflect.Complex128: layout.FieldC128,
}

// Fields returns the field description of a pointer-free fixed-size type
// (one Register accepts): its scalars in memory order, each named by its
// dotted path from the value ("Pos.X"; "" for a scalar type itself). An
// array of scalars, nested or not, is one field of Count elements (row-major);
// an array of structs is described element by element ("Wheels[2].Pressure").
// Blank fields (_) are padding and are not described.
func Fields(t reflect.Type) ([]layout.FieldDesc, error) {
	out, err := appendFields(nil, t, "", 0)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("type %v has no fields to describe (only blank or zero-size ones)", t)
	}
	return out, nil
}

func appendFields(out []layout.FieldDesc, t reflect.Type, path string, off uintptr) ([]layout.FieldDesc, error) {
	if ft, ok := scalarTypes[t.Kind()]; ok {
		return appendField(out, layout.FieldDesc{Name: path, Type: ft, Offset: uint32(off), Count: 1})
	}
	switch t.Kind() {
	case reflect.Array:
		leaf, n := t, 1
		for leaf.Kind() == reflect.Array {
			n *= leaf.Len()
			leaf = leaf.Elem()
		}
		if n == 0 {
			return out, nil
		}
		if ft, ok := scalarTypes[leaf.Kind()]; ok {
			return appendField(out, layout.FieldDesc{Name: path, Type: ft, Offset: uint32(off), Count: uint32(n)})
		}
		var err error
		for i := 0; i < t.Len(); i++ {
			if out, err = appendFields(out, t.Elem(), fmt.Sprintf("%s[%d]", path, i), off+uintptr(i)*t.Elem().Size()); err != nil {
				return nil, err
			}
		}
		return out, nil
	case reflect.Struct:
		var err error
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Name == "_" {
				continue
			}
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			if out, err = appendFields(out, f.Type, p, off+f.Offset); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("field %q is a %v", path, t.Kind()) // checkKind refused it before
}

func appendField(out []layout.FieldDesc, f layout.FieldDesc) ([]layout.FieldDesc, error) {
	if len(f.Name) > layout.MaxFieldName {
		return nil, fmt.Errorf("field path %.40q… is %d bytes (at most %d)", f.Name, len(f.Name), layout.MaxFieldName)
	}
	return append(out, f), nil
}

// Fingerprint returns the layout fingerprint of a type Register accepts:
// layout.FieldsFingerprint of its size, alignment and Fields. Type names are
// not part of it, so equally laid out types in different programs (and
// languages) agree; reordering, renaming or retyping fields changes it. 0
// for a type Fields cannot describe.
func Fingerprint(t reflect.Type) uint64 {
	fields, err := Fields(t)
	if err != nil {
		return 0
	}
	return layout.FieldsFingerprint(uint32(t.Size()), uint32(t.Align()), fields)
}
