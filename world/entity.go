package world

import (
	"fmt"
	"math/bits"
)

// Entity is an entity handle: index in the low 32 bits, generation in the
// high 32 bits. Entity(0) is the null entity and never alive.
type Entity uint64

// MakeEntity builds a handle from an index and a generation.
func MakeEntity(index, gen uint32) Entity { return Entity(uint64(gen)<<32 | uint64(index)) }

// Index returns the entity index (its slot in the world).
func (e Entity) Index() uint32 { return uint32(e) }

// Gen returns the generation of the handle.
func (e Entity) Gen() uint32 { return uint32(e >> 32) }

// String formats the handle as "e<index>v<gen>".
func (e Entity) String() string {
	if e == 0 {
		return "e-null"
	}
	return fmt.Sprintf("e%dv%d", e.Index(), e.Gen())
}

// ComponentID identifies a registered component (0..63).
type ComponentID uint8

// Mask is a set of component ids: bit k is component k.
type Mask uint64

// MaskOf returns the mask of the given ids. Ids >= 64 are ignored.
func MaskOf(ids ...ComponentID) Mask {
	var m Mask
	for _, id := range ids {
		if id < 64 {
			m |= 1 << id
		}
	}
	return m
}

// Has reports whether id is in the mask.
func (m Mask) Has(id ComponentID) bool { return id < 64 && m&(1<<id) != 0 }

// Contains reports whether every component of o is in m.
func (m Mask) Contains(o Mask) bool { return m&o == o }

// With returns m with id added.
func (m Mask) With(id ComponentID) Mask { return m | MaskOf(id) }

// Count returns the number of components in the mask.
func (m Mask) Count() int { return bits.OnesCount64(uint64(m)) }
