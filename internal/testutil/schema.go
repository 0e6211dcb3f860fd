package testutil

import (
	"fmt"
	"reflect"

	"github.com/fdp-engine/fdp/world"
)

// WideType is the Go type of component i of WideRegistry: arrays of uint64,
// uint32 or byte in turn (alignments 8, 4 and 1), of i/3+1 elements, so that
// every component has a distinct type and columns of several sizes and
// alignments follow each other.
func WideType(i int) reflect.Type {
	elem := []reflect.Type{reflect.TypeFor[uint64](), reflect.TypeFor[uint32](), reflect.TypeFor[byte]()}[i%3]
	return reflect.ArrayOf(i/3+1, elem)
}

// WideName is the name of component i of WideRegistry ("W0", "W1", ...).
func WideName(i int) string { return fmt.Sprintf("W%d", i) }

// WideRegistry returns a registry of n components (WideType, WideName),
// component i with id i: for worlds whose masks span several words (n > 64;
// at most layout.MaxComponents, else it panics). A test process and its
// module children that build it with the same n agree on the schema.
func WideRegistry(n int) *world.Registry {
	r := world.NewRegistry()
	for i := 0; i < n; i++ {
		id, err := world.RegisterType(r, WideType(i), WideName(i))
		if err != nil {
			panic(fmt.Sprintf("wide registry: %v", err))
		}
		if int(id) != i {
			panic(fmt.Sprintf("wide registry: component %d got id %d", i, id))
		}
	}
	return r
}
