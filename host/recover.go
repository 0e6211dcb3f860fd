package host

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	gosync "sync"

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
	i := slices.IndexFunc(infos, func(in shm.Info) bool { return in.Name == name })
	switch {
	case i < 0:
		return 0, fmt.Errorf("%w (%s)", ErrNoStaleWorld, name)
	case infos[i].State == shm.StateLive || infos[i].State == shm.StateInitialising:
		return 0, fmt.Errorf("%w: %s is %s (creator pid %d)", ErrEngineAlive, name, infos[i].State, infos[i].PID)
	}
	return recoverNamed(infos[i], w)
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
	singles := w.Registry().Singletons()
	if lw.Header.SchemaHash != w.Registry().SchemaHash() || len(lw.Components) != len(want) || len(lw.Singletons) != len(singles) {
		return fail("%w: schema hash %#x in the segment, %#x here", layout.ErrSchema, lw.Header.SchemaHash, w.Registry().SchemaHash())
	}
	for i := range singles {
		if !lw.Singletons[i].Equal(singles[i]) {
			return fail("%w: singleton %d is %q in the segment, %q here", layout.ErrSchema, i, lw.Singletons[i].Name, singles[i].Name)
		}
	}
	for i := range want {
		if !lw.Components[i].Equal(want[i]) {
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
	full := w.Registry().Mask()
	if world.Mask(info.Mask) != full {
		return fail("slot %d is a partial snapshot (mask %v, want %v)", s, world.Mask(info.Mask), full)
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
		rc.recs = decodeRecords(b[eo:ee], lw.MaskWords)
		rc.cols = make([][]byte, len(want))
		rc.cvers = make([]uint64, len(want))
		for k := range want {
			rc.cvers[k] = layout.Load64(b, lw.ChunkVersionOff(s, c, k))
			if rc.cvers[k] == 0 {
				continue // never written in the live world
			}
			co, ce := lw.ColumnSpan(s, c, k) // with a variable-size component's arena
			rc.cols[k] = append([]byte(nil), b[co:ce]...)
		}
	}
	// The singletons (in the slot's head, always allocated).
	svals := make([][]byte, len(singles))
	svers := make([]uint64, len(singles))
	for i := range singles {
		svers[i] = layout.Load64(b, lw.SingletonVersionOff(s, i))
		o, e := lw.SingletonRange(s, i)
		svals[i] = append([]byte(nil), b[o:e]...)
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
	for i := range singles {
		if svers[i] > info.Version {
			return fail("slot %d: singleton %q has version %d, above the slot's %d", s, singles[i].Name, svers[i], info.Version)
		}
		if err := w.RestoreSingleton(world.SingletonID(i), svals[i], svers[i]); err != nil {
			return fail("slot %d: %w", s, err)
		}
	}
	w.RestoreFinish(info.Version)
	if w.HighWater() != int(info.Entities) || w.Count() != int(info.Alive) {
		return fail("slot %d: header says %d entities (%d alive), the records hold %d (%d alive)",
			s, info.Entities, info.Alive, w.HighWater(), w.Count())
	}
	return frame, nil
}

// decodeRecords decodes entity records of words mask words (8 + 8W bytes
// each, little-endian).
func decodeRecords(b []byte, words int) []layout.EntityRecord {
	size := layout.RecordSize(words)
	recs := make([]layout.EntityRecord, len(b)/size)
	for i := range recs {
		recs[i] = layout.DecodeRecord(b[i*size:], words)
	}
	return recs
}

// StartInfo reports what PrepareStart did.
type StartInfo struct {
	// Recovered is true when World holds the last complete frame of a dead
	// engine; Frame is that frame number and Source the segment it was read
	// from (the stale world segment or an aside copy).
	Recovered bool
	Frame     uint64
	Source    string
	// ResumeFrame is the highest frame number that any previous engine of
	// the instance published and that is still readable (in the stale world
	// segment or an aside copy), also when nothing was recovered; 0 when
	// there is none. The engine must resume after it (Engine.ResumeAfter) so
	// that frame numbers never go backwards.
	ResumeFrame uint64
	// Reason tells why nothing was recovered (nil when Recovered, or when
	// there was no previous world: errors.Is(Reason, ErrNoStaleWorld)).
	Reason error
	// Removed lists the segment names of the instance that are gone: stale
	// segments unlinked, and the world segment's name when that segment was
	// renamed aside (its new name is in Aside).
	Removed []string
	// Aside lists the aside copies (shm.Aside) kept until the engine's first
	// publish: the recovery source and, when another copy holds a higher
	// frame number, that one. Engine.ResumeAfter or DropAside removes them.
	Aside []string
}

// candidate is a world segment (or an aside copy) a start may recover from.
type candidate struct {
	in  shm.Info
	err error // why it was not recovered (nil: not tried, or recovered)
}

// pendingAside is what PrepareStart kept aside for an instance of this
// process, until the engine's first publish.
type pendingAside struct {
	names     []string
	recovered *world.World // the world recovered into (nil if none)
	frame     uint64       // its frame
}

var pending struct {
	mu gosync.Mutex
	m  map[string]pendingAside // instance -> aside copies
}

// PrepareStart is the engine start-up path of an instance. It recovers the
// world of a dead engine into empty() (an empty world of the engine's
// configuration) from the newest recoverable frame of the instance's stale
// world segment and its aside copies (shm.Aside), and prepares the segment
// directory for New:
//
//   - the recovery source, and the segment with the highest frame number if
//     that is another one, are kept: the stale world segment is renamed to a
//     free aside place (rename(2)), so that an engine killed before its first
//     publish loses nothing; they are removed after the first publish
//     (Engine.ResumeAfter publishes a recovered world at once; otherwise call
//     DropAside after the first successful frame);
//   - every other stale segment of the instance is removed (shm.GC).
//
// It returns the recovered world, or nil when the engine must build a clean
// world (the reason is logged at warning level unless there was simply
// nothing to recover); either way StartInfo.ResumeFrame is the frame to
// resume after. It fails when another engine of the instance is alive.
func PrepareStart(instance string, empty func() (*world.World, error), log *slog.Logger) (*world.World, StartInfo, error) {
	if log == nil {
		log = slog.Default()
	}
	var si StartInfo
	infos, err := shm.List()
	if err != nil {
		return nil, si, fmt.Errorf("%w: %w", ErrRecover, err)
	}
	var cands []candidate
	for _, in := range infos {
		if in.Instance != instance || !shm.RecoveryMaterial(in) {
			continue
		}
		if in.State == shm.StateLive || in.State == shm.StateInitialising || in.Locked {
			if in.Kind == shm.WorldKind {
				return nil, si, fmt.Errorf("%w: %s is %s (creator pid %d)", ErrEngineAlive, in.Name, in.State, in.PID)
			}
			continue // an aside copy whose creator runs: not ours to touch
		}
		if in.State == shm.StateForeign {
			continue
		}
		cands = append(cands, candidate{in: in})
		si.ResumeFrame = max(si.ResumeFrame, in.Frame)
	}
	// Newest first; on a tie the world segment (the newer engine's) first.
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i].in, cands[j].in
		if a.Frame != b.Frame {
			return a.Frame > b.Frame
		}
		return a.Kind == shm.WorldKind && b.Kind != shm.WorldKind
	})

	var w *world.World
	src, top := -1, -1 // recovery source; the segment with the highest frame
	for i := range cands {
		c := &cands[i]
		if c.in.Frame > 0 && top < 0 {
			top = i
		}
		if w != nil {
			continue
		}
		nw, err := empty()
		if err != nil {
			return nil, si, err
		}
		frame, err := recoverNamed(c.in, nw)
		if err != nil {
			c.err = err
			continue
		}
		w, src = nw, i
		si.Recovered, si.Frame, si.Source = true, frame, c.in.Name
	}
	switch {
	case w != nil:
		log.Info("recovered the world from the last complete frame of the dead engine",
			"instance", instance, "frame", si.Frame, "entities", w.Count(), "source", si.Source, "resume_after", si.ResumeFrame)
		for _, c := range cands[:src] {
			if c.err != nil {
				log.Warn("a newer world of the dead engine is not recoverable", "instance", instance, "segment", c.in.Name, "reason", c.err)
			}
		}
	case len(cands) == 0:
		si.Reason = fmt.Errorf("%w (%s)", ErrNoStaleWorld, shm.SegmentName(instance, fsync.WorldSegment))
	default:
		si.Reason = cands[0].err
		log.Warn("cannot recover the world of the dead engine; starting clean", "instance", instance,
			"reason", si.Reason, "resume_after", si.ResumeFrame)
	}

	// Keep the source and the highest frame; remove the other candidates.
	keep := map[int]bool{}
	if src >= 0 {
		keep[src] = true
	}
	if top >= 0 {
		keep[top] = true
	}
	var unlinked []string // for the log: Removed also names the renamed world
	renamed := "-"
	taken := map[shm.Aside]bool{}
	for i, c := range cands {
		switch {
		case keep[i] && c.in.Aside != shm.NoAside:
			taken[c.in.Aside] = true
		case !keep[i]:
			in := c.in
			in.KeptForRecovery = false // this start decides about the copies
			if !shm.Removable(in) {
				continue // e.g. a corrupt file whose creator still runs
			}
			if err := shm.Unlink(c.in.Name); err != nil {
				return nil, si, err
			}
			si.Removed = append(si.Removed, c.in.Name)
			unlinked = append(unlinked, c.in.Name)
		}
	}
	for i, c := range cands {
		if !keep[i] {
			continue
		}
		name := c.in.Name
		if c.in.Aside == shm.NoAside {
			place := shm.NoAside
			for _, a := range shm.Asides {
				if !taken[a] {
					place = a
					break
				}
			}
			name = shm.SegmentName(instance, place.Kind())
			if err := shm.Rename(c.in.Name, name); err != nil {
				return nil, si, err
			}
			renamed = c.in.Name + " -> " + name
			taken[place] = true
			si.Removed = append(si.Removed, c.in.Name)
		}
		si.Aside = append(si.Aside, name)
	}
	removed, err := shm.GC(instance)
	si.Removed = append(si.Removed, removed...)
	if unlinked = append(unlinked, removed...); len(unlinked) > 0 {
		log.Info("removed stale segments", "instance", instance, "segments", unlinked)
	}
	if err != nil {
		return nil, si, err
	}
	if len(si.Aside) > 0 {
		pending.mu.Lock()
		if pending.m == nil {
			pending.m = map[string]pendingAside{}
		}
		pending.m[instance] = pendingAside{names: si.Aside, recovered: w, frame: si.Frame}
		pending.mu.Unlock()
		log.Info("kept the dead engine's world aside until the first publish", "instance", instance, "aside", si.Aside, "renamed", renamed)
	}
	return w, si, nil
}

// recoverNamed restores w from the stale segment described by in.
func recoverNamed(in shm.Info, w *world.World) (uint64, error) {
	if in.State != shm.StateStale {
		if in.Err == nil {
			return 0, fmt.Errorf("%w: %s is %s", ErrRecover, in.Name, in.State)
		}
		return 0, fmt.Errorf("%w: %s is %s: %w", ErrRecover, in.Name, in.State, in.Err)
	}
	seg, err := shm.Open(in.Name, false)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrRecover, err)
	}
	defer seg.Close()
	frame, err := RecoverFromSegment(seg.Data, w)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", in.Name, err)
	}
	return frame, nil
}

// DropAside removes the aside copies that PrepareStart kept for instance in
// this process, once the instance's live world segment has published a frame
// at or beyond theirs (shm.Info.KeptForRecovery is false); a copy still
// needed is kept and reported by a later call. Call it after the engine's
// first successful publish. It returns the names removed.
func DropAside(instance string) ([]string, error) {
	pending.mu.Lock()
	defer pending.mu.Unlock()
	p, ok := pending.m[instance]
	if !ok {
		return nil, nil
	}
	infos, err := shm.List()
	if err != nil {
		return nil, err
	}
	var removed, left []string
	for _, name := range p.names {
		i := slices.IndexFunc(infos, func(in shm.Info) bool { return in.Name == name })
		switch {
		case i < 0:
		case infos[i].Locked || infos[i].State == shm.StateLive || infos[i].State == shm.StateInitialising:
			// Its creator runs: not the dead engine's copy this start kept.
		case infos[i].KeptForRecovery:
			left = append(left, name)
		default:
			if err := shm.Unlink(name); err != nil {
				return removed, err
			}
			removed = append(removed, name)
		}
	}
	if len(left) == 0 {
		delete(pending.m, instance)
	} else {
		p.names = left
		pending.m[instance] = p
	}
	return removed, nil
}

// ResumeAfter makes the engine's next frame frame+1 (after a recovery, or
// after StartInfo.ResumeFrame of a clean start). It must be called before
// the first Step.
//
// When the engine runs on the world PrepareStart recovered for its instance
// and frame is the recovered frame, ResumeAfter publishes that world at once
// as frame (the same content the dead engine had published under that
// number) and then removes the aside copies (DropAside): the old world is
// gone only once the new segment holds it.
func (e *Engine) ResumeAfter(frame uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Frames != 0 || e.frame > frame || e.pub.Frame() != 0 {
		return fmt.Errorf("fdp/host: cannot resume after frame %d: the engine is at frame %d", frame, max(e.frame, e.pub.Frame()))
	}
	e.frame = frame
	pending.mu.Lock()
	p, ok := pending.m[e.cfg.Instance]
	pending.mu.Unlock()
	if !ok || p.recovered != e.w || p.frame != frame || frame == 0 {
		return nil
	}
	if _, err := e.pub.Publish(frame, e.allMask); err != nil {
		e.log.Warn("cannot publish the recovered frame yet; the aside copies stay until the first publish", "frame", frame, "err", err)
		return nil
	}
	if e.rec != nil {
		e.rec.published(frame) // a published frame like any: the recording's first
	}
	removed, err := DropAside(e.cfg.Instance)
	if err != nil {
		e.log.Warn("cannot remove the aside copies of the dead engine's world", "err", err)
	} else if len(removed) > 0 {
		e.log.Info("published the recovered frame; removed the aside copies", "frame", frame, "removed", removed)
	}
	return nil
}
