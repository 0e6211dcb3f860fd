// Package sync publishes the engine's live world into shared-memory frame
// slots and lets other processes read those slots in place.
//
// Import it as fsync beside the standard library:
//
//	import fsync "github.com/fdp-engine/fdp/sync"
//
// # Publishing (engine)
//
// A Publisher copies into a frame slot only the chunk columns whose change
// version in the live world is newer than the version the slot already holds,
// filtered by a component mask (the seeds' SyncFrom). The slot's seqlock word
// is odd while the copy runs and even when it is complete; the "latest" word
// of the segment is flipped only after the slot is complete.
//
// # Slot claims and pins (the lease protocol)
//
// Readers never write into the world segment (they map it PROT_READ). Each
// reader owns an entry in the separate leases segment and pins a slot by
// storing (slot, seq) into its pin word, then re-reading the slot's seq:
//
//	reader:  q = seq[s] (even)  ; pin = (s,q) ; if seq[s] != q { unpin; retry }
//	writer:  seq[s] = q+1 (odd) ; if any pin names s { seq[s] = q; pick another }
//
// All four accesses are sequentially consistent atomics, so either the
// reader sees the odd seq (and retries) or the writer sees the pin (and backs
// off, restoring the seq, so the slot's bytes never changed). A slot is also
// skipped while it is the latest slot or while any lease (SoD/convoy holders
// or engine references) names it.
package sync
