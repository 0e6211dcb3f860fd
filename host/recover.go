package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// Engine recovery (failure model: "the engine may die: the supervisor
// restarts it, and it can recover the world from the last complete published
// frame").
//
// A killed engine leaves its segments in place. The world segment's latest
// word names the slot of the last complete GDB publish (latest is stored only
// after the slot's seq became even), so that slot holds a consistent copy of
// every component of the world at that frame. A slot the engine was writing
// when it died is odd and is never the latest one; recovery never reads it.

// Recovery errors. Every error of RecoverWorld wraps one of them.
var (
	// ErrNoStaleWorld: the instance has no world segment; nothing to recover
	// (a first start).
	ErrNoStaleWorld = errors.New("fdp/host: no world segment left by a previous engine")
	// ErrEngineAlive: the world segment's creator is alive: another engine
	// of the instance is running (or starting).
	ErrEngineAlive = errors.New("fdp/host: the instance's engine is alive")
	// ErrRecover: the segment or its latest frame is unusable; start clean.
	ErrRecover = errors.New("fdp/host: cannot recover the world")
)

// RecoverWorld restores w from the last complete frame published by a dead
// engine of instance (its world segment must be stale: creator dead). w must
// be empty, fresh from world.New with the same registry and chunk capacity
// as the dead engine's world and at least as many chunks. It returns the
// recovered frame number; publishing should resume after it (see
// Engine.ResumeAfter) so that readers never see frame numbers go backwards.
//
// The segment is only read. On error w may be partly restored and must be
// discarded. The stale segments are not removed (shm.GC does that).
func RecoverWorld(instance string, w *world.World) (frame uint64, err error) {
	name := shm.SegmentName(instance, fsync.WorldSegment)
	infos, err := shm.List()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrRecover, err)
	}
	var in *shm.Info
	for i := range infos {
		if infos[i].Name == name {
			in = &infos[i]
		}
	}
	switch {
	case in == nil:
		return 0, fmt.Errorf("%w (%s)", ErrNoStaleWorld, name)
	case in.State == shm.StateLive || in.State == shm.StateInitialising:
		return 0, fmt.Errorf("%w: %s is %s (creator pid %d)", ErrEngineAlive, name, in.State, in.PID)
	case in.State != shm.StateStale:
		return 0, fmt.Errorf("%w: %s is %s: %v", ErrRecover, name, in.State, in.Err)
	}
	seg, err := shm.Open(name, false)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrRecover, err)
	}
	defer seg.Close()
	return RecoverFromSegment(seg.Data, w)
}

// recoveredChunk is a private copy of one chunk of the recovered slot.
type recoveredChunk struct {
	recs  []layout.EntityRecord
	sv    uint64
	cols  [][]byte // per component; nil when the column was never written
	cvers []uint64
}

// RecoverFromSegment restores w (see RecoverWorld) from the mapped bytes of
// a world segment whose writer is gone. It copies the latest slot privately
// under the seqlock rule (seq even and unchanged across the copy), validates
// everything, and only then rebuilds w.
func RecoverFromSegment(b []byte, w *world.World) (uint64, error) {
	fail := func(format string, a ...any) (uint64, error) {
		return 0, fmt.Errorf("%w: "+format, append([]any{ErrRecover}, a...)...)
	}
	if w.HighWater() != 0 || w.Count() != 0 {
		return fail("the target world is not empty (%d entities)", w.Count())
	}
	lw, err := layout.DecodeWorld(b)
	if err != nil {
		return fail("world segment: %w", err)
	}
	want := w.Registry().Components()
	if lw.Header.SchemaHash != layout.SchemaHash(want) || len(lw.Components) != len(want) {
		return fail("%w: schema hash %#x in the segment, %#x here", layout.ErrSchema, lw.Header.SchemaHash, layout.SchemaHash(want))
	}
	for i := range want {
		if lw.Components[i] != want[i] {
			return fail("%w: component %d is %q in the segment, %q here", layout.ErrSchema, i, lw.Components[i].Name, want[i].Name)
		}
	}
	if lw.ChunkCapacity != w.ChunkCapacity() {
		return fail("chunk capacity %d in the segment, %d here", lw.ChunkCapacity, w.ChunkCapacity())
	}
	latest := layout.Load64(b, layout.OffWLatest)
	frame, s, ok := layout.UnpackLatest(latest)
	if !ok {
		return fail("nothing was published")
	}
	if s >= lw.Slots {
		return fail("latest word names slot %d of %d", s, lw.Slots)
	}
	seqOff := lw.SlotOff(s) + layout.SlotSeq
	q := layout.Load64(b, seqOff)
	if q&1 != 0 {
		return fail("latest slot %d was left being written (seq %d odd)", s, q)
	}
	info := lw.ReadSlotInfo(s)
	if err := lw.ValidateSlotInfo(info); err != nil {
		return fail("slot %d header: %w", s, err)
	}
	if info.Frame != frame {
		return fail("slot %d holds frame %d, the latest word says %d", s, info.Frame, frame)
	}
	full := uint64(w.Registry().Mask())
	if info.Mask != full {
		return fail("slot %d is a partial snapshot (mask %#x, want %#x)", s, info.Mask, full)
	}
	if int(info.Chunks) > w.MaxChunks() {
		return fail("slot %d uses %d chunks, the world has room for %d", s, info.Chunks, w.MaxChunks())
	}
	if wantChunks := (int(info.Entities) + lw.ChunkCapacity - 1) / lw.ChunkCapacity; int(info.Chunks) != wantChunks {
		return fail("slot %d: %d chunks for %d entities", s, info.Chunks, info.Entities)
	}

	// Private copy, then the seqlock re-check: nothing read is trusted
	// unless the seq is unchanged.
	chunks := make([]recoveredChunk, info.Chunks)
	for c := range chunks {
		rc := &chunks[c]
		rc.sv = layout.Load64(b, lw.ChunkOff(s, c)+layout.ChunkStructVersion)
		eo, ee := lw.EntityRange(s, c)
		rc.recs = decodeRecords(b[eo:ee])
		rc.cols = make([][]byte, len(want))
		rc.cvers = make([]uint64, len(want))
		for k := range want {
			rc.cvers[k] = layout.Load64(b, lw.ChunkVersionOff(s, c, k))
			if rc.cvers[k] == 0 {
				continue // never written in the live world
			}
			co, ce := lw.ColumnRange(s, c, k)
			rc.cols[k] = append([]byte(nil), b[co:ce]...)
		}
	}
	if q2 := layout.Load64(b, seqOff); q2 != q {
		return fail("slot %d was rewritten during the copy (seq %d -> %d)", s, q, q2)
	}
	if l2 := layout.Load64(b, layout.OffWLatest); l2 != latest {
		return fail("the latest word changed during the copy: is the engine alive?")
	}

	for c := range chunks {
		rc := &chunks[c]
		if err := w.SetChunkData(c, rc.recs, rc.sv); err != nil {
			return fail("slot %d: %w", s, err)
		}
		for k, col := range rc.cols {
			if col == nil {
				continue
			}
			if err := w.RestoreColumn(c, world.ComponentID(k), col, rc.cvers[k]); err != nil {
				return fail("slot %d: %w", s, err)
			}
		}
	}
	w.RestoreFinish(info.Version)
	if w.HighWater() != int(info.Entities) || w.Count() != int(info.Alive) {
		return fail("slot %d: header says %d entities (%d alive), the records hold %d (%d alive)",
			s, info.Entities, info.Alive, w.HighWater(), w.Count())
	}
	return frame, nil
}

// decodeRecords decodes entity records (16 bytes each, little-endian).
func decodeRecords(b []byte) []layout.EntityRecord {
	recs := make([]layout.EntityRecord, len(b)/layout.EntityRecordSize)
	for i := range recs {
		o := i * layout.EntityRecordSize
		recs[i] = layout.EntityRecord{
			Gen:   binary.LittleEndian.Uint32(b[o:]),
			Flags: binary.LittleEndian.Uint32(b[o+4:]),
			Mask:  binary.LittleEndian.Uint64(b[o+8:]),
		}
	}
	return recs
}

// StartInfo reports what PrepareStart did.
type StartInfo struct {
	// Recovered is true when World holds the last complete frame of a dead
	// engine; Frame is that frame number.
	Recovered bool
	Frame     uint64
	// Reason tells why nothing was recovered (nil when Recovered, or when
	// there was no previous world: errors.Is(Reason, ErrNoStaleWorld)).
	Reason error
	// Removed lists the stale segments removed.
	Removed []string
}

// PrepareStart is the engine start-up path of an instance: it tries to
// recover the world of a dead engine into empty() (an empty world of the
// engine's configuration), then removes the instance's stale segments
// (shm.GC) so that New can create fresh ones. It returns the recovered world,
// or nil when the engine must build a clean world (the reason is logged at
// warning level unless there was simply nothing to recover). It fails when
// another engine of the instance is alive.
func PrepareStart(instance string, empty func() (*world.World, error), log *slog.Logger) (*world.World, StartInfo, error) {
	if log == nil {
		log = slog.Default()
	}
	var si StartInfo
	w, err := empty()
	if err != nil {
		return nil, si, err
	}
	frame, err := RecoverWorld(instance, w)
	switch {
	case err == nil:
		si.Recovered, si.Frame = true, frame
		log.Info("recovered the world from the last complete frame of the dead engine",
			"instance", instance, "frame", frame, "entities", w.Count())
	case errors.Is(err, ErrEngineAlive):
		return nil, si, err
	case errors.Is(err, ErrNoStaleWorld):
		w, si.Reason = nil, err
	default:
		w, si.Reason = nil, err
		log.Warn("cannot recover the world of the dead engine; starting clean", "instance", instance, "reason", err)
	}
	si.Removed, err = shm.GC(instance)
	if len(si.Removed) > 0 {
		log.Info("removed stale segments", "instance", instance, "segments", si.Removed)
	}
	if err != nil {
		return nil, si, err
	}
	return w, si, nil
}

// ResumeAfter makes the engine's next frame frame+1 (after a recovery). It
// must be called before the first Step.
func (e *Engine) ResumeAfter(frame uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Frames != 0 || e.frame > frame {
		return fmt.Errorf("fdp/host: cannot resume after frame %d: the engine is at frame %d", frame, e.frame)
	}
	e.frame = frame
	return nil
}
