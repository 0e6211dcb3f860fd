package sync

import (
	"fmt"
	"os"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
)

// Segment kinds used in segment names (fdp.<instance>.<kind>).
const (
	WorldSegment  = "world"
	LeasesSegment = "leases"
)

// DefaultSlots is the number of frame slots: triple buffering plus room for
// slow-tier snapshots held across frames. A slot holds memory only for what
// it holds (backing.go), so slots are cheap address space.
const DefaultSlots = 6

// WorldSegments are the engine's read-write mappings of an instance's world
// and leases segments.
type WorldSegments struct {
	Instance string
	World    *shm.Segment
	Leases   *shm.Segment
}

// CreateWorldSegments creates and initialises the world and leases segments of
// an instance for the given world, with slots frame slots (0: DefaultSlots)
// and an external reader table of readers entries (0:
// layout.DefaultReaders). The ready word of each is stored last.
func CreateWorldSegments(instance string, w *world.World, slots, readers int) (*WorldSegments, error) {
	if slots == 0 {
		slots = DefaultSlots
	}
	if readers == 0 {
		readers = layout.DefaultReaders
	}
	comps := w.Registry().Components()
	maxChunks := w.MaxChunks()
	g, err := layout.ComputeWorldGeometry(layout.WorldParams{
		Instance: instance, Slots: slots, ChunkCapacity: w.ChunkCapacity(), MaxChunks: maxChunks, Components: comps,
		Singletons: w.Registry().Singletons(),
	})
	if err != nil {
		return nil, err
	}
	lg, err := layout.ComputeLeasesGeometry(slots, readers)
	if err != nil {
		return nil, err
	}
	hdr := layout.Header{
		Instance: instance, CreatorPID: uint32(os.Getpid()), CreatorTime: shm.SelfStartTime(), CreatedNano: time.Now().UnixNano(),
	}
	// Sparse: the header, the component and singleton tables and each
	// slot's head (its first page, and its singleton area) are allocated
	// now; the rest as fills need it (layout/backing.go).
	ws, err := shm.CreateSparse(shm.SegmentName(instance, WorldSegment), g.TotalSize, g.SlotsOff)
	if err != nil {
		return nil, err
	}
	for s := 0; s < g.Slots && err == nil; s++ {
		err = ws.Back(g.SlotOff(s), g.SlotHead)
	}
	if err != nil {
		ws.Unlink()
		ws.Close()
		return nil, err
	}
	ls, err := shm.Create(shm.SegmentName(instance, LeasesSegment), lg.TotalSize)
	if err != nil {
		ws.Unlink()
		ws.Close()
		return nil, err
	}
	fail := func(err error) (*WorldSegments, error) {
		ws.Unlink()
		ws.Close()
		ls.Unlink()
		ls.Close()
		return nil, err
	}
	if err := layout.EncodeLeases(ls.Data, lg, hdr); err != nil {
		return fail(err)
	}
	if err := layout.EncodeWorld(ws.Data, g, hdr); err != nil {
		return fail(err)
	}
	layout.MarkReady(ls.Data)
	layout.MarkReady(ws.Data)
	return &WorldSegments{Instance: instance, World: ws, Leases: ls}, nil
}

// Close unmaps the segments (they stay in the file system).
func (s *WorldSegments) Close() error {
	e1 := s.World.Close()
	e2 := s.Leases.Close()
	if e1 != nil {
		return e1
	}
	return e2
}

// Unlink removes the segments from the file system.
func (s *WorldSegments) Unlink() error {
	e1 := s.World.Unlink()
	e2 := s.Leases.Unlink()
	if e1 != nil {
		return e1
	}
	return e2
}

// checkSchema compares a world segment's component and singleton tables
// with a registry.
func checkSchema(lw *layout.World, reg *world.Registry) error {
	want := reg.Components()
	if lw.Header.SchemaHash == reg.SchemaHash() {
		return nil
	}
	have := lw.Components
	for i := 0; i < len(want) || i < len(have); i++ {
		switch {
		case i >= len(have):
			return fmt.Errorf("%w: segment lacks component %q", layout.ErrSchema, want[i].Name)
		case i >= len(want):
			return fmt.Errorf("%w: segment has extra component %q", layout.ErrSchema, have[i].Name)
		case !want[i].Equal(have[i]):
			return fmt.Errorf("%w: component %d is %q (size %d, fingerprint %#x) in the segment, %q (size %d, fingerprint %#x) here",
				layout.ErrSchema, i, have[i].Name, have[i].Size, have[i].Fingerprint, want[i].Name, want[i].Size, want[i].Fingerprint)
		}
	}
	if err := checkSingletons(lw.Singletons, reg.Singletons()); err != nil {
		return err
	}
	return fmt.Errorf("%w: schema hash %#x in the segment, %#x here", layout.ErrSchema, lw.Header.SchemaHash, reg.SchemaHash())
}

// checkSingletons names the first difference of two singleton tables.
func checkSingletons(have, want []layout.SingletonDesc) error {
	for i := 0; i < len(want) || i < len(have); i++ {
		switch {
		case i >= len(have):
			return fmt.Errorf("%w: segment lacks singleton %q", layout.ErrSchema, want[i].Name)
		case i >= len(want):
			return fmt.Errorf("%w: segment has extra singleton %q", layout.ErrSchema, have[i].Name)
		case !want[i].Equal(have[i]):
			return fmt.Errorf("%w: singleton %d is %q (size %d, fingerprint %#x) in the segment, %q (size %d, fingerprint %#x) here",
				layout.ErrSchema, i, have[i].Name, have[i].Size, have[i].Fingerprint, want[i].Name, want[i].Size, want[i].Fingerprint)
		}
	}
	return nil
}
