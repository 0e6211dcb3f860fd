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
// Readers never write into the world segment (they map it PROT_READ). A
// reader pins a slot by storing (slot, seq) into its pin word, then
// re-reading the slot's seq:
//
//	reader:  q = seq[s] (even)  ; pin = (s,q) ; if seq[s] != q { unpin; retry }
//	writer:  seq[s] = q+1 (odd) ; if any pin names s { seq[s] = q; pick another }
//
// All four accesses are sequentially consistent atomics (Go's sync/atomic),
// so either the reader sees the odd seq (and retries) or the writer sees the
// pin (and backs off, restoring the seq, so the slot's bytes never
// changed). Every such access carries an ORDER comment naming its partner.
//
// Where the pin words are: nothing a module writes is shared with another
// module. A module's pin word is in its own module segment (the reader line,
// layout.OffMPin); the engine's host watches it (Publisher.WatchPin) from
// just before it rings the module's tick until it has seen the tick done,
// so the writer's scan covers exactly the modules that may be reading. Tools
// of the engine's uid that read without being modules (Attach) pin through
// the external reader table of the leases segment, which the writer also
// scans.
//
// A slot is also skipped while it is the latest slot or while a lease
// (SoD/convoy snapshot) holds it. Lease holders are kept in the
// publisher's own memory (Publisher.Snapshot, ReleaseHolder): the engine
// releases a module's lease when it sees the module's tick done or the
// module dead; a module's release writes nothing and only checks the
// seqlock (a torn read). The leases segment gets a copy of the holders for
// inspection, which nothing reads back.
package sync
