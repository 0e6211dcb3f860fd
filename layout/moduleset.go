package layout

import (
	"math/bits"
	"strconv"
	"strings"
)

// ModuleSetWords is the number of 64-bit words of a ModuleSet.
const ModuleSetWords = MaxModules / 64

// ModuleSet is a set of module slots (0 <= slot < MaxModules): lease
// holders, watched pins, the members of a convoy dispatch. It is a value
// (an array), so copying, comparing with == and clearing with = ModuleSet{}
// allocate nothing; the engine uses it on the frame path.
//
// Word w holds slots 64w..64w+63, slot n at bit n%64: the same order as its
// bytes in the leases segment (PutModuleSet).
type ModuleSet [ModuleSetWords]uint64

// ModuleSetOf returns the set of the given slots.
func ModuleSetOf(slots ...int) ModuleSet {
	var s ModuleSet
	for _, n := range slots {
		s.Set(n)
	}
	return s
}

// Set adds slot n. It panics if n is not in [0, MaxModules): a slot out of
// range is a bug of the caller, which validates slots where they enter.
func (s *ModuleSet) Set(n int) { s[n>>6] |= 1 << (uint(n) & 63) }

// Clear removes slot n (same range as Set).
func (s *ModuleSet) Clear(n int) { s[n>>6] &^= 1 << (uint(n) & 63) }

// Has reports whether slot n is in the set; false for any n out of range.
func (s ModuleSet) Has(n int) bool {
	return uint(n) < MaxModules && s[n>>6]&(1<<(uint(n)&63)) != 0
}

// Empty reports whether the set has no member.
func (s ModuleSet) Empty() bool { return s == ModuleSet{} }

// Count returns the number of members.
func (s ModuleSet) Count() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// Next returns the smallest member >= from, or -1 if there is none. The
// members in increasing order:
//
//	for n := s.Next(0); n >= 0; n = s.Next(n + 1) { ... }
func (s ModuleSet) Next(from int) int {
	if from < 0 {
		from = 0
	}
	for w := from >> 6; w < ModuleSetWords; w++ {
		m := s[w]
		if w == from>>6 {
			m &= ^uint64(0) << (uint(from) & 63)
		}
		if m != 0 {
			return w<<6 | bits.TrailingZeros64(m)
		}
	}
	return -1
}

// Union returns s ∪ o.
func (s ModuleSet) Union(o ModuleSet) ModuleSet {
	for i := range s {
		s[i] |= o[i]
	}
	return s
}

// Intersect returns s ∩ o.
func (s ModuleSet) Intersect(o ModuleSet) ModuleSet {
	for i := range s {
		s[i] &= o[i]
	}
	return s
}

// Minus returns s \ o.
func (s ModuleSet) Minus(o ModuleSet) ModuleSet {
	for i := range s {
		s[i] &^= o[i]
	}
	return s
}

// String lists the members, e.g. "{3 64 255}" (logs and test failures).
func (s ModuleSet) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for n := s.Next(0); n >= 0; n = s.Next(n + 1) {
		if b.Len() > 1 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(n))
	}
	b.WriteByte('}')
	return b.String()
}

// ModuleSetBytes is the size of a ModuleSet in shared memory.
const ModuleSetBytes = 8 * ModuleSetWords

// PutModuleSet stores s at b[off:off+ModuleSetBytes] as ModuleSetWords
// little-endian u64 words, each with an atomic store (Store64: off must be
// 8-aligned). The words are not stored as one: a reader may see some words
// of the old set and some of the new (the leases segment's copy of the
// holders is for inspection only).
func PutModuleSet(b []byte, off int, s ModuleSet) {
	for i, w := range s {
		Store64(b, off+8*i, w)
	}
}

// GetModuleSet loads a ModuleSet stored by PutModuleSet.
func GetModuleSet(b []byte, off int) ModuleSet {
	var s ModuleSet
	for i := range s {
		s[i] = Load64(b, off+8*i)
	}
	return s
}
