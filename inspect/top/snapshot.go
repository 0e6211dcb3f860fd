package top

import (
	"fmt"
	"time"

	"github.com/fdp-engine/fdp/layout"
)

// EngineState is what a read of the instance's world segment found.
type EngineState uint8

// Engine states.
const (
	// EngineAbsent: no world segment of the instance (no engine yet, or
	// the supervisor moved a dead engine's world aside to recover from it).
	EngineAbsent EngineState = iota
	// EngineStarting: the world segment exists but is not ready yet.
	EngineStarting
	// EngineLive: the segment's creator (pid, start time) is alive.
	EngineLive
	// EngineDead: the segment's creator is gone; its figures are its last.
	EngineDead
	// EngineUnreadable: the segment is not a world segment this build can
	// read (Snapshot.Err says why).
	EngineUnreadable
	numEngineStates
)

var engineStateNames = [numEngineStates]string{"absent", "starting", "live", "dead", "unreadable"}

func (s EngineState) String() string {
	if s < numEngineStates {
		return engineStateNames[s]
	}
	return fmt.Sprintf("engine-state(%d)", uint8(s))
}

// Identity names one engine: the creator of a world segment. A restarted
// engine has another pid or start time; a segment re-created by the same
// process has another creation time.
type Identity struct {
	PID     uint32
	Start   uint64 // clock ticks since boot (/proc/<pid>/stat field 22)
	Created int64  // Unix ns of the segment's creation
}

// Snapshot is one read of an instance's segments, copied out of shared
// memory: plain values only, nothing that points into a mapping.
type Snapshot struct {
	At       time.Time
	Instance string
	Engine   EngineState
	Err      string   // EngineUnreadable: why
	Creator  Identity // zero unless the world segment was decoded

	// From the world header (docs/LAYOUT.md, "World segment").
	Published       bool // a frame was published (the latest word is set)
	Frame           uint64
	Publishes       uint64
	Skipped         uint64
	LastPublishNano uint64 // duration of the last publish
	FrameNano       uint64 // duration of the last engine frame
	HeartbeatNano   uint64 // Unix ns of the last publish
	// Time is the engine's time control (paused, speed: layout/timectl.go).
	Time      layout.TimeControl
	ShmHeld   uint64
	ShmLimit  uint64
	PubHist   layout.DurHist
	FrameHist layout.DurHist

	// Modules are the module segments of this engine, by slot.
	Modules []ModuleSnap
}

// ModuleSnap is one module segment of a snapshot.
type ModuleSnap struct {
	Slot  int
	Name  string
	PID   uint32
	Alive bool // its process (pid, start time) exists
	// Stats is the statistics block the engine writes into the segment;
	// nil when it has not written it yet (or StatsErr when it cannot be
	// read).
	Stats    *layout.ModStats
	StatsErr string
}
