package world

import "fmt"

// The query language, shared by the engine's queries (World.Query) and the
// queries modules run on published frames (package sync's Frame.Query, the
// module SDK's View.Query): a query is a With mask and terms,
//
//	w.Query(world.MaskOf(pos, vel), world.Without(dead), world.Optional(tag), world.ChangedSince(v, pos))
//
// and matches, row by row, the alive entities that have every component of
// With and none of Without; Optional components are read where present;
// Changed keeps only the chunks whose change version of one of its
// components moved (chunk granularity: every row of such a chunk is
// visited, written or not).

// TermKind is the kind of a query term.
type TermKind uint8

// Term kinds.
const (
	// TermWith: the entity has every component of the term.
	TermWith TermKind = iota + 1
	// TermWithout: the entity has none of the components of the term.
	TermWithout
	// TermOptional: the components are read where present; they do not
	// change what matches.
	TermOptional
	// TermChanged: the chunk's change version of at least one component
	// of the term is at or after the term's version (chunk granularity).
	TermChanged
)

// String returns the kind's name ("with", "without", "optional", "changed").
func (k TermKind) String() string {
	switch k {
	case TermWith:
		return "with"
	case TermWithout:
		return "without"
	case TermOptional:
		return "optional"
	case TermChanged:
		return "changed"
	}
	return fmt.Sprintf("TermKind(%d)", uint8(k))
}

// Term is one term of a query after its With mask. Terms are small values:
// building and passing them allocates nothing.
type Term struct {
	kind     TermKind
	mask     Mask
	since    uint64
	sinceSet bool // ChangedSince, not Changed
}

// Kind returns the term's kind.
func (t Term) Kind() TermKind { return t.kind }

// Mask returns the components the term names.
func (t Term) Mask() Mask { return t.mask }

// With requires every component of ids (as the query's With mask does).
func With(ids ...ComponentID) Term { return Term{kind: TermWith, mask: MaskOf(ids...)} }

// Without excludes the entities having any component of ids.
func Without(ids ...ComponentID) Term { return Term{kind: TermWithout, mask: MaskOf(ids...)} }

// Optional names components the query reads where present: they do not
// change what matches. Their column (Column) is nil in a chunk where no alive
// entity has them; elsewhere rows of entities lacking them hold unspecified
// bytes: test each row with Has.
func Optional(ids ...ComponentID) Term { return Term{kind: TermOptional, mask: MaskOf(ids...)} }

// Changed keeps the chunks whose change version of at least one component of
// ids moved since the caller's previous run: in a module (View.Query), since
// the frame of its previous successful tick (every chunk on its first tick,
// and on its first tick after an engine restart). In World.Query and
// Frame.Query, which know no previous run, Changed is ChangedSince(0): every
// chunk; pass the version with ChangedSince there.
//
// The granularity is the chunk: a chunk is kept when any of its rows was
// written (a Set, Add, Remove or Destroy of the component, an in-place write
// through Ptr or ColumnMut, even of the same value), and then all its
// matching rows are visited.
func Changed(ids ...ComponentID) Term { return Term{kind: TermChanged, mask: MaskOf(ids...)} }

// ChangedSince keeps the chunks whose change version of at least one
// component of ids is at or after v: written at World.Version() v or later.
// A simulation system that runs once per frame keeps v = w.Version() read at
// the start of its previous run: it then sees every write made since, its
// own included. On a published frame, versions are the world's: the chunks
// written after frame P was sealed are those at or after
// P.Info().Version+1.
func ChangedSince(v uint64, ids ...ComponentID) Term {
	return Term{kind: TermChanged, mask: MaskOf(ids...), since: v, sinceSet: true}
}

// Filter is a compiled query: a With mask and terms folded into masks. It
// is a value; NewFilter allocates nothing.
type Filter struct {
	with, without, optional, changed Mask
	// since is the oldest version of the ChangedSince terms, sinceSet when
	// there is one; plain: there is a Changed term without a version, which
	// stands for dflt (DefaultSince; 0, every chunk, without one).
	since, dflt     uint64
	sinceSet, plain bool
}

// NewFilter folds with and terms into a Filter. Terms of one kind add up:
// With and Without terms are and-ed (every With component, no Without one),
// the components of every Changed term form one set (a chunk is kept when
// one of them moved), and of several versions (ChangedSince terms, and
// Changed terms' previous run) the oldest counts (a chunk reported too
// often, never one missed). A term of an unknown kind (the zero Term) is
// ignored.
func NewFilter(with Mask, terms ...Term) Filter {
	f := Filter{with: with}
	for _, t := range terms {
		switch t.kind {
		case TermWith:
			f.with = f.with.Or(t.mask)
		case TermWithout:
			f.without = f.without.Or(t.mask)
		case TermOptional:
			f.optional = f.optional.Or(t.mask)
		case TermChanged:
			f.changed = f.changed.Or(t.mask)
			switch {
			case !t.sinceSet:
				f.plain = true
			case !f.sinceSet || t.since < f.since:
				f.since, f.sinceSet = t.since, true
			}
		}
	}
	return f
}

// With returns the components every matching entity has.
func (f Filter) With() Mask { return f.with }

// Without returns the components no matching entity has.
func (f Filter) Without() Mask { return f.without }

// Optional returns the components read where present.
func (f Filter) Optional() Mask { return f.optional }

// Changed returns the components whose chunk versions the filter checks
// (empty: every chunk).
func (f Filter) Changed() Mask { return f.changed }

// Since returns the version of the Changed terms: a chunk is kept when its
// version of a Changed component is >= it. It is the oldest of the
// ChangedSince versions and, with a Changed term, of its previous run
// (DefaultSince; 0, every chunk, without it).
func (f Filter) Since() uint64 {
	switch {
	case f.plain && f.sinceSet:
		return min(f.since, f.dflt)
	case f.plain:
		return f.dflt
	}
	return f.since
}

// Names returns every component the filter names, which a reader must hold
// to run it: With, Without, Optional and Changed.
func (f Filter) Names() Mask { return f.with.Or(f.without).Or(f.optional).Or(f.changed) }

// DefaultSince returns f with v as the version of its Changed terms (those
// without a version of their own: ChangedSince terms keep theirs). The
// module SDK gives them the version of the module's previous tick this way.
func (f Filter) DefaultSince(v uint64) Filter {
	f.dflt = v
	return f
}

// Contradictory reports whether a component is both in With and in
// Without: the filter matches nothing.
func (f Filter) Contradictory() bool { return !f.with.And(f.without).Empty() }

// Care and Want are the per-row test of a filter, one masked compare per
// record mask word: a record's mask r matches when r & Care == Want (every
// With bit set, every Without bit clear), for a filter that is not
// Contradictory. A plain With query costs the same compare as before there
// were Without terms (r & with == with).
func (f Filter) Care() Mask { return f.with.Or(f.without) }

// Want: see Care.
func (f Filter) Want() Mask { return f.with }
