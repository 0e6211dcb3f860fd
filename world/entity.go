package world

import "fmt"

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

// ComponentID identifies a registered component (0..255: a world has at
// most layout.MaxComponents).
type ComponentID uint8
