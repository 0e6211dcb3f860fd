package layout

import "fmt"

// The flight recorder's words of the world header (docs/LAYOUT.md, "World
// segment"): written by the engine's frame thread at the end of every frame
// while it records, read by `engine stat` and `engine top`. 0 everywhere: the
// engine does not record.
const (
	// OffWRecState is the RecorderState (u32), then 4 bytes reserved, 0.
	OffWRecState = 2400
	// OffWRecWritten counts the frame records in the recording file.
	OffWRecWritten = 2408 // u64
	// OffWRecDropped counts the frames published while recording that were
	// not recorded (the capture of the previous one still running, the
	// writer's queue full, a frame's events and batches over the bound, a
	// failed capture).
	OffWRecDropped = 2416 // u64
	// OffWRecFileBytes is the recording file's size in bytes.
	OffWRecFileBytes = 2424 // u64
	// OffWRecRawBytes is the frame payload bytes written, before
	// compression.
	OffWRecRawBytes = 2432 // u64
	// OffWRecKeyframes counts the keyframes among OffWRecWritten.
	OffWRecKeyframes = 2440 // u64
	// 2448..2463 reserved, 0.
)

// RecorderState is the state of the engine's flight recorder.
type RecorderState uint32

// Recorder states.
const (
	RecorderOff    RecorderState = 0 // not recording
	RecorderOn     RecorderState = 1 // recording
	RecorderFailed RecorderState = 2 // the file writer failed (disk full...): every later frame is dropped
)

func (s RecorderState) String() string {
	switch s {
	case RecorderOff:
		return "off"
	case RecorderOn:
		return "recording"
	case RecorderFailed:
		return "failed"
	}
	return fmt.Sprintf("recorder-state(%d)", uint32(s))
}

// RecorderStats are the recorder words of a world header.
type RecorderStats struct {
	State                                            RecorderState
	Written, Dropped, FileBytes, RawBytes, Keyframes uint64
}

// PutRecorderStats stores s into world header b (atomic stores: readers
// map the segment while the engine writes).
func PutRecorderStats(b []byte, s RecorderStats) {
	Store32(b, OffWRecState, uint32(s.State))
	Store64(b, OffWRecWritten, s.Written)
	Store64(b, OffWRecDropped, s.Dropped)
	Store64(b, OffWRecFileBytes, s.FileBytes)
	Store64(b, OffWRecRawBytes, s.RawBytes)
	Store64(b, OffWRecKeyframes, s.Keyframes)
}

// ReadRecorderStats loads the recorder words of world header b.
func ReadRecorderStats(b []byte) RecorderStats {
	return RecorderStats{State: RecorderState(Load32(b, OffWRecState)), Written: Load64(b, OffWRecWritten),
		Dropped: Load64(b, OffWRecDropped), FileBytes: Load64(b, OffWRecFileBytes), RawBytes: Load64(b, OffWRecRawBytes),
		Keyframes: Load64(b, OffWRecKeyframes)}
}
