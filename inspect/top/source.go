package top

import (
	"errors"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
)

// Source reads an instance's segments read-only, one Snapshot at a time. It
// keeps the world segment mapped between reads and re-opens it by name when
// the file under the name is no longer the mapped one (a new engine created
// its own, or the supervisor moved a dead engine's aside). Module segments
// are opened for each read and closed after it. Sample and Close may be
// called from different goroutines: the interactive view samples in a
// command goroutine of its own, which can still be running when the view
// has quit and its caller closes the source (mu: a Sample never reads a
// mapping that Close unmapped).
type Source struct {
	mu     sync.Mutex
	closed bool

	instance string
	// Alive reports whether a process (pid, start time) exists; nil means
	// shm.ProcessAlive. Tests inject their own.
	Alive func(pid uint32, start uint64) bool

	world *shm.Segment
	lw    *layout.World
}

// NewSource returns a Source of instance; it maps nothing until Sample.
func NewSource(instance string) *Source { return &Source{instance: instance} }

// Instance returns the instance name the source reads.
func (s *Source) Instance() string { return s.instance }

// Close unmaps what the source holds; a later Sample maps nothing and
// reports the engine absent.
func (s *Source) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.unmap()
}

// unmap drops the world mapping (s.mu held).
func (s *Source) unmap() {
	if s.world != nil {
		s.world.Close()
		s.world, s.lw = nil, nil
	}
}

func (s *Source) alive(pid uint32, start uint64) bool {
	if s.Alive != nil {
		return s.Alive(pid, start)
	}
	return shm.ProcessAlive(pid, start)
}

// attach maps the instance's world segment if it is not mapped or the name
// now names another file. It returns the state to report when no decoded
// world is at hand.
func (s *Source) attach() (EngineState, string) {
	if s.world != nil && s.world.Current() {
		return EngineLive, ""
	}
	s.unmap()
	seg, err := shm.Open(shm.SegmentName(s.instance, "world"), false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return EngineAbsent, ""
		}
		return EngineUnreadable, err.Error()
	}
	lw, err := layout.DecodeWorld(seg.Data)
	if err != nil {
		seg.Close()
		if errors.Is(err, layout.ErrNotReady) {
			return EngineStarting, ""
		}
		return EngineUnreadable, seg.Path + ": " + err.Error()
	}
	s.world, s.lw = seg, lw
	return EngineLive, ""
}

// Sample reads the world header's statistics and histograms and the
// statistics block of every module segment of the same engine, all with
// atomic loads on read-only mappings; at is the time it stamps on the
// snapshot.
func (s *Source) Sample(at time.Time) *Snapshot {
	snap := &Snapshot{At: at, Instance: s.instance}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		snap.Engine, snap.Err = EngineAbsent, "source closed"
		return snap
	}
	state, why := s.attach()
	if s.lw == nil {
		snap.Engine, snap.Err = state, why
		return snap
	}
	h := s.lw.Header
	snap.Creator = Identity{PID: h.CreatorPID, Start: h.CreatorTime, Created: h.CreatedNano}
	snap.Engine = EngineLive
	if !s.alive(h.CreatorPID, h.CreatorTime) {
		snap.Engine = EngineDead
	}
	st, latest := inspect.ReadWorldStats(s.lw)
	b := s.world.Data
	snap.Published, snap.Frame = latest.Published, latest.Frame
	snap.Publishes, snap.Skipped = st.Publishes, st.Skipped
	snap.LastPublishNano, snap.FrameNano, snap.HeartbeatNano = st.LastPublishNano, st.FrameNano, st.HeartbeatNano
	snap.ShmHeld, snap.ShmLimit = st.ShmHeld, st.ShmLimit
	snap.Time = layout.LoadTimeControl(b)
	snap.PubHist = layout.ReadDurHist(b, layout.OffWPubHist)
	snap.FrameHist = layout.ReadDurHist(b, layout.OffWFrameHist)
	snap.Modules = s.modules(h)
	return snap
}

// modules reads the module segments whose creator is the world's (a module
// segment a dead engine left behind is not this engine's).
func (s *Source) modules(wh *layout.Header) []ModuleSnap {
	ents, err := os.ReadDir(shm.Dir)
	if err != nil {
		return nil
	}
	prefix := "fdp." + s.instance + ".mod."
	var out []ModuleSnap
	for _, de := range ents {
		rest, ok := strings.CutPrefix(de.Name(), prefix)
		if !ok {
			continue
		}
		slot, err := strconv.Atoi(rest)
		if err != nil || slot < 0 || slot >= layout.MaxModules || strconv.Itoa(slot) != rest {
			continue
		}
		if m, ok := s.module(de.Name(), wh); ok {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out
}

func (s *Source) module(name string, wh *layout.Header) (ModuleSnap, bool) {
	seg, err := shm.Open(name, false)
	if err != nil {
		return ModuleSnap{}, false
	}
	defer seg.Close()
	m, err := layout.DecodeModule(seg.Data)
	if err != nil || m.Header.CreatorPID != wh.CreatorPID || m.Header.CreatorTime != wh.CreatorTime {
		return ModuleSnap{}, false
	}
	b := seg.Data
	ms := ModuleSnap{Slot: int(m.Info.Slot), Name: m.Info.Name, PID: layout.Load32(b, layout.OffMPID)}
	ms.Alive = ms.PID != 0 && s.alive(ms.PID, layout.Load64(b, layout.OffMStartTime))
	switch st, _, err := layout.DecodeModStats(b); {
	case errors.Is(err, layout.ErrNoModStats):
	case err != nil:
		ms.StatsErr = err.Error()
	default:
		ms.Stats = &st
	}
	return ms, true
}
