// Package world is the live entity-component-system (ECS) of the FDP engine
// process.
//
// # Model
//
// An Entity is a 64-bit handle: the entity index in the low 32 bits and its
// generation in the high 32 bits. Generations start at 1, so Entity(0) is
// never valid (the null entity). Destroying an entity bumps the generation of
// its index; every handle of the old generation becomes stale: IsAlive
// reports false and every accessor fails with ErrStale. Freed indices are
// reused first-in first-out to delay reuse as long as possible.
//
// Storage follows the original C# FDP rather than an archetype design:
// entity index i lives in chunk i/ChunkCapacity at row i%ChunkCapacity. Every
// chunk has one column per registered component (structure of arrays) and a
// per-entity record (generation, alive flag, component mask of
// layout.MaskWords words; records.go keeps it in its wire form) that says
// which components the entity has; a world has at most layout.MaxComponents
// (256) components. Chunks are allocated
// lazily as the entity high-water mark grows; a column of a chunk is
// allocated on the first write of that component in that chunk and never
// freed. The number of chunks, hence the number of entities, is bounded by
// Config.MaxChunks.
//
// # Versions
//
// The world has a frame version (Version, starting at 1) that the engine
// bumps once per frame with Advance. Every write stamps the affected chunk:
// component writes (Set, SetRaw, Add, Remove, Ptr, ColumnMut, Destroy) stamp
// the chunk's change version of that component, structural changes (Create,
// Destroy, Add, Remove, and Set when it adds) also stamp the chunk's
// structural version. The publisher (package sync) copies into shared memory
// only the chunk columns whose version is newer than what a frame slot holds.
//
// # Components
//
// Components are plain Go types without pointers (see Register): their bytes
// are copied verbatim into shared memory and read by other processes. Each
// registered type gets a ComponentID (0..255: up to layout.MaxComponents
// types) and a layout fingerprint; the registry's SchemaHash lets processes
// check that they agree on the schema.
//
// Two other kinds (docs/ARCHITECTURE.md): singletons (RegisterSingleton,
// RegisterTime: one value per world, SetSingleton, GetSingleton; their own
// id space, SingletonID) and variable-size components (RegisterBytes: byte
// strings or UTF-8 strings of up to BytesSpec.MaxLen bytes per entity, set
// with SetBytes and SetString and read with GetBytes; each chunk keeps them
// in an arena after the component's column of handles, varsize.go).
//
// # Queries
//
// Query iterates chunk by chunk and hands out typed column slices:
//
//	q := w.Query(world.MaskOf(posID, velID))
//	for q.Next() {
//		pos := world.ColumnMut[Position](&q, posID)
//		vel := world.Column[Velocity](&q, velID)
//		for i, n := 0, q.Rows(); i < n; i++ {
//			if !q.Match(i) {
//				continue
//			}
//			pos[i].X += vel[i].X
//		}
//	}
//
// A query is a With mask and terms (filter.go): Without, Optional, Changed
// and ChangedSince, the same language as a module's queries of a published
// frame:
//
//	q := w.Query(world.MaskOf(posID), world.Without(frozenID), world.ChangedSince(mark, posID))
//
// Queries (building and iterating them, Count, Any, First), Get, Set and
// Ptr do not allocate. A World is not safe for
// concurrent use: the engine mutates it from its frame loop only.
package world
