package layout

import (
	"fmt"
	"math"
)

// Time control words of the world segment's kind header (docs/LAYOUT.md,
// "World segment", "Kind header"): the engine's paused state and speed,
// written by the engine when they change and at every turn of its frame
// loop while paused, for the inspection tools (`engine stat`, `engine top`)
// and the supervisor's hang check. They sit at the end of the statistics
// area, right before the publish histogram; a segment written before they
// existed has zeros there, which read as running at speed 1.
const (
	// OffWTimeBeat is the Unix ns of the engine's last frame-loop turn
	// while paused (its heartbeat when it does not publish); 0: never
	// paused.
	OffWTimeBeat = 2496 // u64
	// OffWTimeSteps is the frames of step requests not run yet.
	OffWTimeSteps = 2504 // u64
	// OffWTimeState is the TimeState.
	OffWTimeState = 2512 // u32
	// OffWTimeFlags holds TimeFlag bits.
	OffWTimeFlags = 2516 // u32
	// OffWTimeSpeed is the speed, a float64's IEEE-754 bits; 0 reads as 1.
	OffWTimeSpeed = 2520 // u64
)

// TimeState is the engine's time-control state (OffWTimeState).
type TimeState uint32

// Time-control states.
const (
	TimeRunning TimeState = 0 // frames run at the frame rate
	TimePaused  TimeState = 1 // no frame runs but the steps pending
)

func (s TimeState) String() string {
	switch s {
	case TimeRunning:
		return "running"
	case TimePaused:
		return "paused"
	}
	return fmt.Sprintf("TimeState(%d)", uint32(s))
}

// TimeFlag bits (OffWTimeFlags).
const (
	// TimeFlagReplay: the instance publishes a recording (engine replay),
	// where the speed scales the frame rate instead of the step.
	TimeFlagReplay uint32 = 1
)

// TimeControl is what the time-control words of a world segment say.
type TimeControl struct {
	State TimeState
	Speed float64
	Steps uint64
	// Beat is the Unix ns of the last frame-loop turn while paused.
	Beat   uint64
	Replay bool
}

// LoadTimeControl reads the time-control words of a world segment's
// kind header (b: at least its first 4096 bytes), one atomic load each.
func LoadTimeControl(b []byte) TimeControl {
	tc := TimeControl{
		State: TimeState(Load32(b, OffWTimeState)),
		Speed: math.Float64frombits(Load64(b, OffWTimeSpeed)),
		Steps: Load64(b, OffWTimeSteps),
		Beat:  Load64(b, OffWTimeBeat),
	}
	tc.Replay = Load32(b, OffWTimeFlags)&TimeFlagReplay != 0
	if tc.Speed == 0 {
		tc.Speed = 1
	}
	return tc
}

// StoreTimeControl writes the time-control words (the engine only).
func StoreTimeControl(b []byte, tc TimeControl) {
	Store64(b, OffWTimeSpeed, math.Float64bits(tc.Speed))
	Store64(b, OffWTimeSteps, tc.Steps)
	var flags uint32
	if tc.Replay {
		flags |= TimeFlagReplay
	}
	Store32(b, OffWTimeFlags, flags)
	Store32(b, OffWTimeState, uint32(tc.State))
	Store64(b, OffWTimeBeat, tc.Beat)
}
