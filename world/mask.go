package world

import (
	"iter"
	"math/bits"
	"strconv"
	"strings"

	"github.com/fdp-engine/fdp/layout"
)

// Mask is a set of component ids: bit k%64 of word k/64 is component k. It
// is a fixed-size value (layout.MaxMaskWords words, 256 components), so
// masks are compared with == and passed, combined and stored without
// allocating. Words beyond a world's layout.MaskWords are always zero. The
// zero Mask is the empty set.
type Mask [layout.MaxMaskWords]uint64

// MaskOf returns the mask of the given ids.
func MaskOf(ids ...ComponentID) Mask {
	var m Mask
	for _, id := range ids {
		m[id>>6] |= 1 << (id & 63)
	}
	return m
}

// MaskWord returns the mask of components 0..63 given as one 64-bit word
// (bit k = component k), the form a 64-component world used.
func MaskWord(w uint64) Mask { return Mask{w} }

// Has reports whether id is in the mask.
func (m Mask) Has(id ComponentID) bool { return m[id>>6]&(1<<(id&63)) != 0 }

// Contains reports whether every component of o is in m.
func (m Mask) Contains(o Mask) bool { return o.AndNot(m).Empty() }

// With returns m with id added.
func (m Mask) With(id ComponentID) Mask {
	m[id>>6] |= 1 << (id & 63)
	return m
}

// Without returns m with id removed.
func (m Mask) Without(id ComponentID) Mask {
	m[id>>6] &^= 1 << (id & 63)
	return m
}

// And returns the components in both m and o.
func (m Mask) And(o Mask) Mask {
	for j := range m {
		m[j] &= o[j]
	}
	return m
}

// Or returns the components in m or o.
func (m Mask) Or(o Mask) Mask {
	for j := range m {
		m[j] |= o[j]
	}
	return m
}

// AndNot returns the components of m that are not in o.
func (m Mask) AndNot(o Mask) Mask {
	for j := range m {
		m[j] &^= o[j]
	}
	return m
}

// Empty reports whether the mask names no component.
func (m Mask) Empty() bool { return m == Mask{} }

// Equal reports whether m and o name the same components (m == o).
func (m Mask) Equal(o Mask) bool { return m == o }

// Count returns the number of components in the mask.
func (m Mask) Count() int {
	n := 0
	for _, w := range m {
		n += bits.OnesCount64(w)
	}
	return n
}

// IDs iterates the components of the mask in increasing order.
func (m Mask) IDs() iter.Seq[ComponentID] {
	return func(yield func(ComponentID) bool) {
		for j, w := range m {
			for ; w != 0; w &= w - 1 {
				if !yield(ComponentID(64*j + bits.TrailingZeros64(w))) {
					return
				}
			}
		}
	}
}

// String formats the mask as one hexadecimal number (layout.FormatMask):
// "0x3" for components 0 and 1.
func (m Mask) String() string { return layout.FormatMask(m) }

// Named formats the mask's components by id, for messages about ids that
// have no name (beyond a schema): "component 200", "components 5, 200".
func (m Mask) Named() string {
	var b strings.Builder
	n := 0
	for id := range m.IDs() {
		if n > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(int(id)))
		n++
	}
	if n == 1 {
		return "component " + b.String()
	}
	return "components " + b.String()
}

// maskUpTo returns the mask of components 0..n-1.
func maskUpTo(n int) Mask { return layout.SchemaMask(n) }

// MaskAll returns the mask of every component id (0..255). Publishing it
// publishes every component of the schema; a query of it matches nothing
// unless the world has layout.MaxComponents components.
func MaskAll() Mask { return layout.SchemaMask(layout.MaxComponents) }
