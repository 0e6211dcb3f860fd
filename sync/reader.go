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
// that read frames without being modules (tools and tests built on this
// package; `engine stat`, `dump` and `verify` do not attach): it maps the
// world segment of an instance read-only (PROT_READ) and its
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
// entry of a dead process if the table is full). When every entry is held
// by a live process it fails at once with ErrNoReaderSlot.
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
	// At once, never after a wait: an entry frees only when its process
	// closes its reader or dies, which nothing here could wait out.
	return -1, fmt.Errorf("%w: all %d entries are held by live processes (the engine's reader table size: host.Config.Readers, engine --readers)",
		ErrNoReaderSlot, ll.Readers)
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

// Contains reports whether addr lies in the reader's mapping of the world
// segment (a fault there is a write into the read-only frame).
func (r *Reader) Contains(addr uintptr) bool { return r.world != nil && r.world.Contains(addr) }

// Locate names what lies at addr in the reader's mapping of the world
// segment (layout.WorldGeometry.Locate): the component a faulting write
// went into. "" when addr is outside it.
func (r *Reader) Locate(addr uintptr) string {
	if r.world == nil {
		return ""
	}
	off, ok := r.world.Offset(addr)
	if !ok {
		return ""
	}
	return r.lw.Locate(off)
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
