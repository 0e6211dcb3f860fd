package sync

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"golang.org/x/sys/unix"
)

// Reader errors.
var (
	ErrNoFrame      = errors.New("nothing published yet")
	ErrBusy         = errors.New("could not pin a stable frame (engine rewriting slots faster than the reader can pin)")
	ErrTorn         = errors.New("frame was rewritten while pinned (pin reclaimed?)")
	ErrNoReaderSlot = errors.New("reader table is full")
	ErrNotPinned    = errors.New("frame is not pinned")
	ErrTypeMismatch = errors.New("component size does not match the Go type")
)

// AttachOptions configure a Reader.
type AttachOptions struct {
	// Name is recorded in the reader entry (visible in `engine dump`).
	Name string
	// Registry, if set, must describe exactly the segment's schema.
	Registry *world.Registry
	// SchemaHash, if non-zero, must equal the segment's schema hash.
	SchemaHash uint64
}

// Reader is a read-only view of an instance's world segment. It pins frames
// through one pin word, which lives either in a module's own segment (a
// module reader, NewModuleReader: the engine watches that word while the
// module is in a tick) or in an entry of the external reader table of the
// leases segment (Attach: a tool or test of the engine's own uid). A Reader
// is used by one goroutine.
type Reader struct {
	Instance string
	world    *shm.Segment
	lw       *layout.World
	// The pin word and its counters: b[pinOff], b[pinsOff], ...
	pb                                []byte
	pinOff, pinsOff, retriesOff, beat int
	// External readers only: the leases segment and the claimed entry.
	leases *shm.Segment
	ll     *layout.Leases
	entry  int
	frame  Frame
	leased Frame
}

// NewModuleReader returns the reader of a module: world is the world
// segment mapped read-only from the descriptor the engine passed, mod the
// module's own segment, whose reader line (layout.OffMPin...) holds the pin.
// The Reader takes ownership of world (Close unmaps it); mod stays the
// caller's and must outlive the Reader. The world is validated like Attach
// does.
func NewModuleReader(world *shm.Segment, mod *layout.Module, opt AttachOptions) (*Reader, error) {
	r := &Reader{world: world, entry: -1, pb: mod.B,
		pinOff: layout.OffMPin, pinsOff: layout.OffMPinCount, retriesOff: layout.OffMPinRetries, beat: layout.OffMPinNanos}
	if err := r.decodeWorld(opt); err != nil {
		r.Close()
		return nil, err
	}
	r.Instance = r.lw.Header.Instance
	// ORDER(pin-reset): a previous incarnation's pin is meaningless; the
	// engine watches the word only while this module is in a tick.
	layout.Store64(r.pb, r.pinOff, 0)
	r.frame.r, r.leased.r = r, r
	return r, nil
}

func (r *Reader) decodeWorld(opt AttachOptions) error {
	var err error
	if r.lw, err = layout.DecodeWorld(r.world.Data); err != nil {
		return fmt.Errorf("world segment %s: %w", r.world.Name, err)
	}
	if opt.Registry != nil {
		if err := checkSchema(r.lw, opt.Registry); err != nil {
			return err
		}
	}
	if opt.SchemaHash != 0 && opt.SchemaHash != r.lw.Header.SchemaHash {
		return fmt.Errorf("%w: schema hash %#x in the segment, %#x expected", layout.ErrSchema, r.lw.Header.SchemaHash, opt.SchemaHash)
	}
	return nil
}

// Attach is the external-reader path, for processes of the engine's own uid
// that read frames without being modules (tools, tests, `engine stat`): it
// maps the world segment of an instance read-only (PROT_READ) and its
// leases segment read-write by name, validates the header and schema, and
// claims an entry of the external reader table, whose pin the engine
// honours. Modules never use it: they get descriptors from the engine
// (NewModuleReader).
func Attach(instance string, opt AttachOptions) (*Reader, error) {
	ws, err := shm.Open(shm.SegmentName(instance, WorldSegment), false)
	if err != nil {
		return nil, err
	}
	r := &Reader{Instance: instance, world: ws, entry: -1}
	fail := func(err error) (*Reader, error) {
		r.Close()
		return nil, err
	}
	if err := r.decodeWorld(opt); err != nil {
		return fail(fmt.Errorf("instance %q: %w", instance, err))
	}
	if r.leases, err = shm.Open(shm.SegmentName(instance, LeasesSegment), true); err != nil {
		return fail(err)
	}
	if r.ll, err = layout.DecodeLeases(r.leases.Data); err != nil {
		return fail(fmt.Errorf("leases segment of %q: %w", instance, err))
	}
	if r.ll.Slots != r.lw.Slots {
		return fail(fmt.Errorf("%w: leases segment has %d slots, world segment %d", layout.ErrCorrupt, r.ll.Slots, r.lw.Slots))
	}
	if r.entry, err = ClaimReader(r.leases.Data, r.ll, opt.Name); err != nil {
		return fail(err)
	}
	o := r.ll.ReaderOff(r.entry)
	r.pb, r.pinOff, r.pinsOff, r.retriesOff, r.beat = r.leases.Data, o+layout.ReaderPin, o+layout.ReaderPins, o+layout.ReaderRetries, o+layout.ReaderHeartbeat
	r.frame.r = r
	r.leased.r = r
	return r, nil
}

// ClaimReader claims a free reader entry for this process (reclaiming the
// entry of a dead process if the table is full).
func ClaimReader(b []byte, ll *layout.Leases, name string) (int, error) {
	pid := uint32(os.Getpid())
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < ll.Readers; i++ {
			o := ll.ReaderOff(i)
			cur := layout.Load32(b, o+layout.ReaderPID)
			if cur != 0 {
				if pass == 0 || readerAlive(b, o) {
					continue
				}
				clearReader(b, ll, i)
				cur = 0
			}
			if !layout.CAS32(b, o+layout.ReaderPID, 0, pid) {
				continue
			}
			layout.Store64(b, o+layout.ReaderStart, shm.SelfStartTime())
			layout.Store64(b, o+layout.ReaderPin, 0)
			layout.Store64(b, o+layout.ReaderHeartbeat, uint64(time.Now().UnixNano()))
			var nb [layout.ReaderNameLen]byte
			copy(nb[:len(nb)-1], name)
			copy(b[o+layout.ReaderName:], nb[:])
			return i, nil
		}
	}
	return -1, ErrNoReaderSlot
}

func readerAlive(b []byte, o int) bool {
	pid := layout.Load32(b, o+layout.ReaderPID)
	if pid == 0 {
		return false
	}
	start := layout.Load64(b, o+layout.ReaderStart)
	if start == 0 {
		// The claimer stores its start time right after the CAS; until then
		// only the pid can be checked.
		err := unix.Kill(int(pid), 0)
		return err == nil || errors.Is(err, unix.EPERM)
	}
	return shm.ProcessAlive(pid, start)
}

// clearReader frees external reader entry i: its pin, then the entry.
// (Lease holders are not in the segment: the engine keeps them.)
func clearReader(b []byte, ll *layout.Leases, i int) {
	o := ll.ReaderOff(i)
	layout.Store64(b, o+layout.ReaderPin, 0)
	layout.Store64(b, o+layout.ReaderStart, 0)
	layout.Store32(b, o+layout.ReaderPID, 0)
}

// ReclaimDeadReaders frees the external reader entries of dead processes,
// and clears pins in entries that no process owns (pid 0: written by
// nobody entitled to). It returns the number of entries or pins reclaimed.
func ReclaimDeadReaders(b []byte, ll *layout.Leases) int {
	n := 0
	for i := 0; i < ll.Readers; i++ {
		o := ll.ReaderOff(i)
		switch pid := layout.Load32(b, o+layout.ReaderPID); {
		case pid == 0 && layout.Load64(b, o+layout.ReaderPin) != 0:
			layout.Store64(b, o+layout.ReaderPin, 0)
			n++
		case pid != 0 && !readerAlive(b, o):
			clearReader(b, ll, i)
			n++
		}
	}
	return n
}

// ReleaseReadersOf frees every external reader entry owned by pid (a
// process known to be dead, e.g. reaped by the supervisor).
func ReleaseReadersOf(b []byte, ll *layout.Leases, pid int) int {
	n := 0
	for i := 0; i < ll.Readers; i++ {
		if layout.Load32(b, ll.ReaderOff(i)+layout.ReaderPID) == uint32(pid) {
			clearReader(b, ll, i)
			n++
		}
	}
	return n
}

// Layout returns the validated world segment view.
func (r *Reader) Layout() *layout.World { return r.lw }

// Entry returns the reader's entry index in the external reader table of
// the leases segment (-1 for a module reader).
func (r *Reader) Entry() int { return r.entry }

// Close releases the pin (and an external reader's entry) and unmaps the
// segments it owns.
func (r *Reader) Close() error {
	if r.leases != nil && r.ll != nil && r.entry >= 0 {
		clearReader(r.leases.Data, r.ll, r.entry)
		r.entry = -1
	} else if r.pb != nil {
		layout.Store64(r.pb, r.pinOff, 0)
	}
	r.pb = nil
	var first error
	for _, s := range []*shm.Segment{r.world, r.leases} {
		if s != nil {
			if err := s.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	r.world, r.leases = nil, nil
	return first
}

// MaxPinAttempts bounds the retries of Pin.
const MaxPinAttempts = 1000

// Pin pins the latest complete frame. The frame stays valid (the engine
// never rewrites it) until Release. A reader holds at most one pin; Pin
// releases a previous one. The returned *Frame is owned by the Reader and
// reused by the next Pin (no allocation).
func (r *Reader) Pin() (*Frame, error) {
	b, pb := r.world.Data, r.pb
	layout.Store64(pb, r.pinOff, 0)
	r.frame.pinned, r.frame.lease = false, false
	for attempt := 0; attempt < MaxPinAttempts; attempt++ {
		frame, s, ok := layout.UnpackLatest(layout.Load64(b, layout.OffWLatest))
		if !ok {
			return nil, ErrNoFrame
		}
		if s >= r.lw.Slots {
			return nil, fmt.Errorf("%w: latest names slot %d of %d", layout.ErrCorrupt, s, r.lw.Slots)
		}
		seqOff := r.lw.SlotOff(s) + layout.SlotSeq
		q := layout.Load64(b, seqOff)
		if q&1 == 0 {
			// ORDER(pin): seq-cst store of the pin, then the seq re-load below.
			// Pairs with the writer's claim (odd seq store, then its pin scan):
			// either this re-load sees the odd seq or the scan sees the pin.
			layout.Store64(pb, r.pinOff, layout.PackPin(s, q))
			// ORDER(pin-check): seq-cst re-load; pairs with ORDER(claim).
			if layout.Load64(b, seqOff) == q {
				info := r.lw.ReadSlotInfo(s)
				if info.Frame != frame {
					// The slot stopped being the latest between the load
					// of latest and the pin and was rewritten since (a
					// convoy snapshot of a later frame, with only its
					// modules' components): the pin is good, the slot is
					// not the latest frame. Retry from latest.
					layout.Store64(pb, r.pinOff, 0)
					layout.Add64(pb, r.retriesOff, 1)
					continue
				}
				if err := r.lw.ValidateSlotInfo(info); err != nil {
					layout.Store64(pb, r.pinOff, 0)
					return nil, err
				}
				layout.Add64(pb, r.pinsOff, 1)
				layout.Store64(pb, r.beat, uint64(time.Now().UnixNano()))
				r.frame.slot, r.frame.seq, r.frame.info, r.frame.pinned = s, q, info, true
				return &r.frame, nil
			}
			layout.Store64(pb, r.pinOff, 0)
		}
		layout.Add64(pb, r.retriesOff, 1)
		if attempt > 8 {
			runtime.Gosched()
		}
	}
	return nil, ErrBusy
}

// Frame is a pinned frame slot read in place.
type Frame struct {
	r      *Reader
	slot   int
	seq    uint64
	info   layout.SlotInfo
	pinned bool
	lease  bool // an engine lease (OpenLeased), not a pin
}

// Number returns the frame number of the pinned slot.
func (f *Frame) Number() uint64 { return f.info.Frame }

// Slot returns the slot index.
func (f *Frame) Slot() int { return f.slot }

// Info returns the slot header as read at pin time.
func (f *Frame) Info() layout.SlotInfo { return f.info }

// Chunks returns the number of chunks in use.
func (f *Frame) Chunks() int { return int(f.info.Chunks) }

// Mask returns the frame's mask: the components its slot holds (SlotMask).
// The latest frame holds every component; a filtered snapshot only those it
// was synced with. Its entity records name no other component (a record's
// mask is its entity's mask & Mask), and the frame refuses to read any
// other: Column returns nil, Get false, and a query of a mask that Mask
// does not cover matches nothing. Columns outside it hold bytes of older
// frames or of other entities, never data of this frame.
func (f *Frame) Mask() world.Mask { return world.Mask(f.info.Mask) }

// Covers reports whether the frame holds every component of mask.
func (f *Frame) Covers(mask world.Mask) bool { return uint64(mask)&^f.info.Mask == 0 }

// Schema returns the mask of every component of the segment's schema.
func (f *Frame) Schema() world.Mask {
	if n := len(f.r.lw.Components); n < 64 {
		return world.Mask(1)<<uint(n) - 1
	}
	return ^world.Mask(0)
}

// ComponentName returns the name of component id in the segment's component
// table ("" if id is not a component of the segment). A Reader built with a
// registry checked that the names are the registry's.
func (f *Frame) ComponentName(id world.ComponentID) string {
	if int(id) >= len(f.r.lw.Components) {
		return ""
	}
	return f.r.lw.Components[id].Name
}

// holds reports whether component id is in the frame's mask.
func (f *Frame) holds(id world.ComponentID) bool {
	return int(id) < 64 && f.info.Mask&(1<<uint(id)) != 0
}

// Valid reports whether the slot is still the one pinned (its seq has not
// changed). Data read before a true Valid() is consistent.
//
// A writer that claims a slot makes its seq odd (q+1) before it checks the
// pins, and restores q when it finds one; a pinned reader can therefore see
// q+1 for the few nanoseconds of such an aborted claim. Valid waits that out:
// q+1 that turns back into q is valid, q+1 that becomes anything else (or
// lasts) means the slot really was rewritten.
func (f *Frame) Valid() bool {
	if !f.pinned {
		return false
	}
	b, off := f.r.world.Data, f.r.lw.SlotOff(f.slot)+layout.SlotSeq
	// ORDER(valid): seq-cst load after the reads of the frame; pairs with
	// the writer's claim and publish stores.
	seq := layout.Load64(b, off)
	for i := 0; seq == f.seq+1 && i < maxClaimSpin; i++ {
		if i > 64 {
			runtime.Gosched()
		}
		seq = layout.Load64(b, off)
	}
	return seq == f.seq
}

// maxClaimSpin bounds how long Valid waits for a transient claim to resolve
// (an aborted claim takes one scan of the reader table).
const maxClaimSpin = 100_000

// Release unpins the frame. It returns ErrTorn if the slot was rewritten
// while pinned: everything read from it must then be discarded.
func (f *Frame) Release() error {
	if !f.pinned {
		return ErrNotPinned
	}
	valid := f.Valid()
	f.pinned = false
	if f.lease {
		// A lease is the engine's: it ends when the engine sees the tick
		// done. Nothing to write.
		f.lease = false
	} else {
		// ORDER(unpin): seq-cst store after every read of the frame.
		layout.Store64(f.r.pb, f.r.pinOff, 0)
	}
	if !valid {
		return ErrTorn
	}
	return nil
}

// Records returns the entity records of chunk c, in place.
func (f *Frame) Records(c int) []layout.EntityRecord {
	if c < 0 || c >= int(f.info.Chunks) {
		return nil
	}
	o, e := f.r.lw.EntityRange(f.slot, c)
	return viewRecords(f.r.world.Data[o:e])
}

// ChunkVersion returns the change version of component id in chunk c.
func (f *Frame) ChunkVersion(c int, id world.ComponentID) uint64 {
	if c < 0 || c >= int(f.info.Chunks) || int(id) >= len(f.r.lw.Components) {
		return 0
	}
	return layout.Load64(f.r.world.Data, f.r.lw.ChunkVersionOff(f.slot, c, int(id)))
}

// CheckType returns an error unless T has the size of component id.
func CheckType[T any](f *Frame, id world.ComponentID) error {
	return checkType[T](f.r.lw, id)
}

func checkType[T any](lw *layout.World, id world.ComponentID) error {
	if int(id) >= len(lw.Components) {
		return fmt.Errorf("%w: component id %d (segment has %d)", world.ErrUnknownComponent, id, len(lw.Components))
	}
	if c := lw.Components[id]; uintptr(c.Size) != sizeOf[T]() {
		return fmt.Errorf("%w: component %q is %d bytes, Go type is %d", ErrTypeMismatch, c.Name, c.Size, sizeOf[T]())
	}
	return nil
}

// Column returns component id's column of chunk c as a []T read in place
// from the read-only mapping (length = chunk capacity). It returns nil if T
// does not match the component's size, c is out of range, or id is not in
// the frame's mask (Frame.Mask: the slot did not sync that column). Only
// rows whose record is alive and has the component bit hold meaningful data.
func Column[T any](f *Frame, c int, id world.ComponentID) []T {
	if c < 0 || c >= int(f.info.Chunks) || !f.holds(id) || checkType[T](f.r.lw, id) != nil {
		return nil
	}
	o, e := f.r.lw.ColumnRange(f.slot, c, int(id))
	return viewColumn[T](f.r.world.Data[o:e])
}

func (f *Frame) record(e world.Entity) (layout.EntityRecord, bool) {
	idx := int(e.Index())
	capc := f.r.lw.ChunkCapacity
	if e == 0 || idx >= int(f.info.Entities) {
		return layout.EntityRecord{}, false
	}
	recs := f.Records(idx / capc)
	if recs == nil {
		return layout.EntityRecord{}, false
	}
	rec := recs[idx%capc]
	return rec, rec.Flags&layout.FlagAlive != 0 && rec.Gen == e.Gen()
}

// IsAlive reports whether e is alive (and of the same generation) in the frame.
func (f *Frame) IsAlive(e world.Entity) bool {
	_, ok := f.record(e)
	return ok
}

// Get copies component id of entity e out of the frame. It returns false if
// e is not alive in the frame, has no such component, or id is not in the
// frame's mask (Frame.Mask).
func Get[T any](f *Frame, e world.Entity, id world.ComponentID) (T, bool) {
	var zero T
	rec, ok := f.record(e)
	// The record's mask is already filtered with the slot mask; the slot
	// mask is checked too, so that a record is never the only guard.
	if !ok || !f.holds(id) || rec.Mask&(1<<uint(id)) == 0 {
		return zero, false
	}
	capc := f.r.lw.ChunkCapacity
	col := Column[T](f, int(e.Index())/capc, id)
	if col == nil {
		return zero, false
	}
	return col[int(e.Index())%capc], true
}

// EntityAt builds the entity handle of a record.
func EntityAt(index int, rec layout.EntityRecord) world.Entity {
	return world.Entity(uint64(rec.Gen)<<32 | uint64(uint32(index)))
}

// FrameQuery iterates the chunks of a frame that hold entities with all the
// components of a mask. It is a value type: iterating allocates nothing. A
// query whose mask the frame does not cover (Frame.Covers) matches nothing,
// and so does the zero FrameQuery.
type FrameQuery struct {
	f     *Frame
	mask  uint64
	chunk int
	recs  []layout.EntityRecord
	rows  int
}

// Query starts a query over the frame. If the frame does not hold every
// component of mask (Frame.Covers), the query matches nothing.
func (f *Frame) Query(mask world.Mask) FrameQuery {
	if !f.Covers(mask) {
		return FrameQuery{chunk: -1}
	}
	return FrameQuery{f: f, mask: uint64(mask), chunk: -1}
}

// Next advances to the next chunk that has a matching entity.
func (q *FrameQuery) Next() bool {
	if q.f == nil {
		return false // a query of a mask the frame does not cover
	}
	capc := q.f.r.lw.ChunkCapacity
	for q.chunk+1 < int(q.f.info.Chunks) {
		q.chunk++
		q.recs = q.f.Records(q.chunk)
		q.rows = int(q.f.info.Entities) - q.chunk*capc
		if q.rows > capc {
			q.rows = capc
		}
		for i := 0; i < q.rows; i++ {
			if q.Match(i) {
				return true
			}
		}
	}
	return false
}

// Chunk returns the current chunk index.
func (q *FrameQuery) Chunk() int { return q.chunk }

// Rows returns the number of rows to scan in the current chunk.
func (q *FrameQuery) Rows() int { return q.rows }

// Match reports whether row i is alive and has every component of the mask.
func (q *FrameQuery) Match(i int) bool {
	if i < 0 || i >= len(q.recs) {
		return false
	}
	r := &q.recs[i]
	return r.Flags&layout.FlagAlive != 0 && r.Mask&q.mask == q.mask
}

// Entity returns the handle of row i.
func (q *FrameQuery) Entity(i int) world.Entity {
	return EntityAt(q.chunk*q.f.r.lw.ChunkCapacity+i, q.recs[i])
}

// Count counts matching entities in the whole frame.
func (f *Frame) Count(mask world.Mask) int {
	n := 0
	q := f.Query(mask)
	for q.Next() {
		for i := 0; i < q.rows; i++ {
			if q.Match(i) {
				n++
			}
		}
	}
	return n
}
