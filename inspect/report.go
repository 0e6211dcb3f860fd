// Package inspect decodes any FDP shared-memory segment read-only into a
// JSON-serialisable Report (stable snake_case field names) and renders it as
// aligned text tables. It backs the `engine dump` and `engine stat` commands.
//
// Inspect never writes to the segment and never blocks: live words (seqlock
// words, the latest word, statistics, pins, lease masks, ring indices and
// doorbells) are read with the layout atomic helpers, and a frame slot whose
// seqlock word changes while it is being read is reported as not stable.
package inspect

import (
	"fmt"
	"strconv"

	"github.com/fdp-engine/fdp/layout"
)

// Report is the decoded content of one segment. Exactly one of World,
// Leases, Events and Module is set once the segment is ready.
type Report struct {
	Source   string        `json:"source,omitempty"` // file the report was read from, set by the caller
	Header   HeaderReport  `json:"header"`
	World    *WorldReport  `json:"world,omitempty"`
	Leases   *LeasesReport `json:"leases,omitempty"`
	Events   *EventsReport `json:"events,omitempty"`
	Module   *ModuleReport `json:"module,omitempty"`
	Notes    []string      `json:"notes"`    // informational remarks (e.g. segment not ready yet)
	Problems []string      `json:"problems"` // inconsistencies found in live data (the header itself was valid)
}

// HeaderReport is the common header of every segment.
type HeaderReport struct {
	MagicOK      bool            `json:"magic_ok"`
	Version      uint32          `json:"version"`
	Kind         string          `json:"kind"`
	KindID       uint32          `json:"kind_id"`
	Instance     string          `json:"instance"`
	TotalSize    uint64          `json:"total_size"`
	SchemaHash   string          `json:"schema_hash"`
	CreatorPID   uint32          `json:"creator_pid"`
	CreatorStart uint64          `json:"creator_start"`
	CreatorAlive bool            `json:"creator_alive"`
	Created      string          `json:"created"`
	CreatedNano  int64           `json:"created_unix_ns"`
	Ready        bool            `json:"ready"`
	Sections     []SectionReport `json:"sections"`
}

// SectionReport is one entry of the section table.
type SectionReport struct {
	ID     uint32 `json:"id"`
	Name   string `json:"name"`
	Count  uint32 `json:"count"`
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
}

// WorldReport describes a world segment (kind 1).
type WorldReport struct {
	SlotCount       int `json:"slot_count"`
	ComponentCount  int `json:"component_count"`
	ChunkCapacity   int `json:"chunk_capacity"`
	MaxChunks       int `json:"max_chunks"`
	ChunkStride     int `json:"chunk_stride"`
	SlotStride      int `json:"slot_stride"`
	ChunkHeaderSize int `json:"chunk_header_size"`
	// FixedBytes is what the segment holds whatever its slots hold:
	// everything before the first slot and each slot's first page
	// (layout.WorldGeometry.FixedBytes).
	FixedBytes int `json:"fixed_bytes"`
	// SlotsBackedBytes is the sum of the slots' BackedBytes: FixedBytes
	// plus it is what Stats.ShmHeld says when the engine is not changing a
	// slot's backing.
	SlotsBackedBytes int               `json:"slots_backed_bytes"`
	Components       []ComponentReport `json:"components"`
	// Singletons is the singleton table, with each singleton's value in
	// the latest frame (empty for a world without singletons).
	Singletons []SingletonReport `json:"singletons"`
	Latest     LatestReport      `json:"latest"`
	Stats      WorldStats        `json:"stats"`
	Slots      []SlotReport      `json:"slots"`
}

// ComponentReport is one entry of the component table.
type ComponentReport struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	Size         uint32 `json:"size"`
	Align        uint32 `json:"align"`
	Fingerprint  string `json:"fingerprint"`
	ColumnOffset int    `json:"column_offset"`
	// Kind is "fixed", "bytes" or "string"; a variable-size component
	// also has its max length, its arena bytes per chunk, and the use of
	// its arenas in the latest frame.
	Kind          string       `json:"kind"`
	MaxLen        uint32       `json:"max_len,omitempty"`
	ArenaPerChunk int          `json:"arena_per_chunk,omitempty"`
	Arena         *ArenaReport `json:"arena,omitempty"`
	// Fields describe the value's bytes (the field table, docs/LAYOUT.md
	// "Field table").
	Fields []FieldReport `json:"fields"`
}

// FieldReport is one entry of the field table: a scalar or a flat array of
// Count scalars of Type at Offset inside the value ("" names the value
// itself; a bytes or string field has count 0: the value is in the arena).
type FieldReport struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Offset uint32 `json:"offset"`
	Count  uint32 `json:"count"`
}

// ArenaReport is the use of a variable-size component's arenas in the
// latest frame (read under the seqlock; absent when the frame does not hold
// the component or was rewritten during the read).
type ArenaReport struct {
	Values   int `json:"values"`   // alive entities with a value
	Bytes    int `json:"bytes"`    // the values' bytes
	Capacity int `json:"capacity"` // the arenas of the chunks in use
}

// SingletonReport is one entry of the singleton table and its value in the
// latest frame.
type SingletonReport struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Size        uint32 `json:"size"`
	Align       uint32 `json:"align"`
	Fingerprint string `json:"fingerprint"`
	ValueOffset int    `json:"value_offset"` // inside a slot
	EngineOwned bool   `json:"engine_owned"`
	// Version and Value are the latest frame's (read under the seqlock):
	// version 0 is never set; Value is hex, "" when there is none.
	Version uint64 `json:"version"`
	Value   string `json:"value"`
	// Fields describe the value's bytes (FieldReport).
	Fields []FieldReport `json:"fields"`
}

// LatestReport is the decoded latest word.
type LatestReport struct {
	Published bool   `json:"published"`
	Frame     uint64 `json:"frame"`
	Slot      int    `json:"slot"`
}

// TimeControlReport is the engine's time control as its world segment
// says (layout/timectl.go): paused or running, the speed, the steps of a
// `ctl step` not run yet, whether the instance is a replay, and the
// engine's last turn while paused (its heartbeat when it publishes nothing).
type TimeControlReport struct {
	State          string  `json:"state"` // layout.TimeState: running, paused
	Paused         bool    `json:"paused"`
	Speed          float64 `json:"speed"`
	StepsPending   uint64  `json:"steps_pending"`
	Replay         bool    `json:"replay"`
	PausedBeatNano uint64  `json:"paused_heartbeat_unix_ns"`
}

// timeControlReport reads the time-control words of a world segment.
func timeControlReport(b []byte) TimeControlReport {
	tc := layout.LoadTimeControl(b)
	return TimeControlReport{State: tc.State.String(), Paused: tc.State == layout.TimePaused, Speed: tc.Speed,
		StepsPending: tc.Steps, Replay: tc.Replay, PausedBeatNano: tc.Beat}
}

// WorldStats is the statistics line of a world segment.
type WorldStats struct {
	// Time is the engine's time control (paused, speed).
	Time             TimeControlReport `json:"time_control"`
	Publishes        uint64            `json:"publishes"`
	Skipped          uint64            `json:"skipped"`
	LastPublishNano  uint64            `json:"last_publish_ns"`
	BytesCopied      uint64            `json:"bytes_copied"`
	ChunksCopied     uint64            `json:"chunks_copied"`
	HeartbeatNano    uint64            `json:"heartbeat_unix_ns"`
	Aborted          uint64            `json:"aborted"`
	FrameNano        uint64            `json:"frame_ns"`
	SnapshotsRefused uint64            `json:"snapshots_refused"` // snapshots refused a due convoy group (no free slot, or no memory)
	// SnapshotsNoSpace are the refused snapshots (part of SnapshotsRefused)
	// whose slot could not be given memory: the shared-memory limit or a
	// full file system.
	SnapshotsNoSpace uint64 `json:"snapshots_refused_no_space"`
	// SkippedNoSpace are the skipped publishes (part of Skipped) for which
	// no slot could be given memory.
	SkippedNoSpace uint64 `json:"skipped_no_space"`
	// ShmHeld is the bytes of the world segment that hold memory, as the
	// engine accounts them (its fixed bytes and every slot's backing).
	ShmHeld uint64 `json:"shm_held_bytes"`
	// ShmLimit is the engine's bound on ShmHeld (0: none but the file
	// system's room).
	ShmLimit uint64 `json:"shm_limit_bytes"`
	// Trimmed counts the slots that gave their memory back after they
	// stayed unused for the engine's slot idle time.
	Trimmed uint64 `json:"slots_trimmed"`
	// Recorder is the engine's flight recorder (the world header's
	// recorder words, layout/recorder.go).
	Recorder RecorderReport `json:"recorder"`
}

// RecorderReport is the flight recorder's figures: its state ("off",
// "recording", "failed"), the frame records in the file (of which
// keyframes), the frames published while recording and not recorded, the
// file's size and the payload bytes before compression.
type RecorderReport struct {
	State     string `json:"state"`
	Frames    uint64 `json:"frames"`
	Keyframes uint64 `json:"keyframes"`
	Dropped   uint64 `json:"dropped"`
	FileBytes uint64 `json:"file_bytes"`
	RawBytes  uint64 `json:"raw_bytes"`
}

// recorderReport decodes the recorder words of world header b.
func recorderReport(b []byte) RecorderReport {
	r := layout.ReadRecorderStats(b)
	return RecorderReport{State: r.State.String(), Frames: r.Written, Keyframes: r.Keyframes, Dropped: r.Dropped,
		FileBytes: r.FileBytes, RawBytes: r.RawBytes}
}

// SlotReport is one frame slot header.
type SlotReport struct {
	Index        int    `json:"index"`
	Seq          uint64 `json:"seq"`
	Writing      bool   `json:"writing"` // odd seq: the engine is writing the slot
	Stable       bool   `json:"stable"`  // seq unchanged while the slot was read
	Latest       bool   `json:"latest"`
	Frame        uint64 `json:"frame"`
	Version      uint64 `json:"version"`
	Mask         string `json:"mask"`
	Chunks       uint32 `json:"chunks"`
	Entities     uint32 `json:"entities"`
	Alive        uint32 `json:"alive"`
	PublishNano  uint64 `json:"publish_unix_ns"`
	BytesCopied  uint64 `json:"bytes_copied"`
	ChunksCopied uint32 `json:"chunks_copied"`
	// BackMask and BackChunks are the slot's backing words: the components
	// and chunks whose pages the slot may hold (a superset of what it
	// holds). BackedBytes is the bytes they name beyond the slot's first
	// page (layout.WorldGeometry.SlotSpanBytes; the first page is in the
	// world's FixedBytes).
	BackMask    string        `json:"back_mask"`
	BackChunks  uint32        `json:"back_chunks"`
	BackedBytes int           `json:"backed_bytes"`
	Error       string        `json:"error,omitempty"`
	ChunkDetail []ChunkReport `json:"chunk_detail,omitempty"` // only with Options.Chunks
}

// ChunkReport is the header of one chunk block of a slot.
type ChunkReport struct {
	Index             int      `json:"index"`
	Rows              uint32   `json:"rows"`
	Alive             uint32   `json:"alive"`
	StructuralVersion uint64   `json:"structural_version"`
	Versions          []uint64 `json:"versions"` // change version of each component column
}

// LeasesReport describes a leases segment (kind 2).
type LeasesReport struct {
	ReaderEntries int               `json:"reader_entries"`
	SlotEntries   int               `json:"slot_entries"`
	Readers       []ReaderReport    `json:"readers"` // non-free entries only
	SlotLeases    []SlotLeaseReport `json:"slot_leases"`
}

// ReaderReport is one claimed reader entry.
type ReaderReport struct {
	Index         int    `json:"index"`
	PID           uint32 `json:"pid"`
	StartTime     uint64 `json:"start_time"`
	Alive         bool   `json:"alive"`
	Flags         uint32 `json:"flags"`
	Name          string `json:"name"`
	Pinned        bool   `json:"pinned"`
	PinSlot       int    `json:"pin_slot"`
	PinSeq        uint64 `json:"pin_seq"`
	Pins          uint64 `json:"pins"`
	Retries       uint64 `json:"retries"`
	HeartbeatNano uint64 `json:"heartbeat_unix_ns"`
}

// SlotLeaseReport is the lease entry of one frame slot.
type SlotLeaseReport struct {
	Slot       int    `json:"slot"`
	Holders    []int  `json:"holders"` // module slots holding the lease (the engine's copy)
	Frame      uint64 `json:"frame"`
	Mask       string `json:"mask"`
	EngineRefs uint32 `json:"engine_refs"`
}

// EventsReport describes an events segment (kind 3).
type EventsReport struct {
	Capacity      int         `json:"capacity"`
	MaxPayload    int         `json:"max_payload"`
	AreaOffset    int         `json:"area_offset"`
	CommitGen     uint64      `json:"commit_gen"`
	NextSeq       uint64      `json:"next_seq"`
	EndPos        uint64      `json:"end_pos"`
	OldestGen     uint64      `json:"oldest_gen"`
	OldestSeq     uint64      `json:"oldest_seq"`
	OldestPos     uint64      `json:"oldest_pos"`
	Retained      uint64      `json:"retained_events"`
	RetainedBytes uint64      `json:"retained_bytes"`
	Stats         EventsStats `json:"stats"`
}

// EventsStats are the counters of an events segment.
type EventsStats struct {
	Events         uint64 `json:"events"`
	PayloadBytes   uint64 `json:"payload_bytes"`
	Commits        uint64 `json:"commits"`
	Rejected       uint64 `json:"rejected"`
	LastFrame      uint64 `json:"last_frame"`
	LastCommitNano uint64 `json:"last_commit_unix_ns"`
}

// ModuleReport describes a per-module segment (kind 4).
type ModuleReport struct {
	Slot          uint32     `json:"slot"`
	Name          string     `json:"name"`
	Tier          uint32     `json:"tier"`
	TierName      string     `json:"tier_name"` // "fast", "slow"
	Frequency     uint32     `json:"frequency"`
	Group         string     `json:"group"` // the hello's convoy group: "" automatic, "solo", a name
	Mask          string     `json:"mask"`
	PID           uint32     `json:"pid"`
	StartTime     uint64     `json:"start_time"`
	Alive         bool       `json:"alive"`
	HeartbeatNano uint64     `json:"heartbeat_unix_ns"`
	Tick          Doorbell   `json:"tick"`
	Done          Doorbell   `json:"done"`
	Wake          TickWake   `json:"wake"`
	Reader        PinReport  `json:"reader"`
	Ring          RingReport `json:"ring"`
	// Stats is the statistics block the engine writes into the segment
	// (layout/modstats.go); null when the engine has not written it.
	Stats *ModuleStatsReport `json:"stats"`
}

// ModuleStatsReport is a module's statistics as the engine wrote them into
// its segment: counters since the engine first admitted the module's name,
// across its restarts.
type ModuleStatsReport struct {
	Version uint32 `json:"version"`
	Stable  bool   `json:"stable"` // false: the engine rewrote the block during every read attempt
	Frame   uint64 `json:"frame"`  // engine frame of the last write
	State   string `json:"state"`  // joined, running, breaker-open, dead
	// FailStreak is the consecutive failures the breaker counts.
	FailStreak   uint32 `json:"fail_streak"`
	Runs         uint64 `json:"runs"`
	Late         uint64 `json:"late"`
	Failures     uint64 `json:"failures"`
	Skipped      uint64 `json:"skipped"`
	Overruns     uint64 `json:"overruns"`
	Revoked      uint64 `json:"revoked"`
	BreakerTrips uint64 `json:"breaker_trips"`
	// BreakerOpenUntil: when the open breaker lets the next probe tick
	// through ("-" when closed).
	BreakerOpenUntil     string        `json:"breaker_open_until"`
	BreakerOpenUntilNano uint64        `json:"breaker_open_until_unix_ns"`
	Applied              uint64        `json:"applied"`
	Rejected             uint64        `json:"rejected"`
	RejectedByReason     []RejectCount `json:"rejected_by_reason"` // non-zero reasons, by reason code
	Snapshots            uint64        `json:"snapshots"`
	CatchUps             uint64        `json:"catch_ups"`
	EventsDelivered      uint64        `json:"events_delivered"`
	EventsLost           uint64        `json:"events_lost"`
	LagFrames            uint64        `json:"lag_frames"`
	LagMaxFrames         uint64        `json:"lag_max_frames"`
	LastTickFrame        uint64        `json:"last_tick_frame"`
	Joins                uint64        `json:"joins"`
	Deaths               uint64        `json:"deaths"`
	// Tick durations, from the engine's ring to the done it saw.
	Ticks         uint64       `json:"ticks"`
	TickP50Nano   uint64       `json:"tick_p50_ns"` // upper bounds of the percentiles (within 2x)
	TickP99Nano   uint64       `json:"tick_p99_ns"`
	TickMaxNano   uint64       `json:"tick_max_ns"`
	TickMeanNano  uint64       `json:"tick_mean_ns"`
	TickLastNano  uint64       `json:"tick_last_ns"`
	TickHistogram []TickBucket `json:"tick_histogram"` // non-empty buckets
}

// RejectCount is the number of commands rejected for one reason.
type RejectCount struct {
	Reason string `json:"reason"`
	Code   int    `json:"code"`
	Count  uint64 `json:"count"`
}

// TickBucket is one bucket of the tick duration histogram: durations d
// with UpperNano/2 <= d < UpperNano.
type TickBucket struct {
	UpperNano uint64 `json:"upper_ns"`
	Count     uint64 `json:"count"`
}

// PinReport is a module's reader line: its pin word and counters (the
// engine honours the pin only while the module is in a tick).
type PinReport struct {
	Pinned   bool   `json:"pinned"`
	PinSlot  int    `json:"pin_slot"`
	PinSeq   uint64 `json:"pin_seq"`
	Pins     uint64 `json:"pins"`
	Retries  uint64 `json:"retries"`
	LastNano uint64 `json:"last_pin_unix_ns"`
}

// TickWake is how the module's tick wake-ups went, as the module counted them.
type TickWake struct {
	StampNano uint64 `json:"tick_stamp_mono_ns"` // engine's CLOCK_MONOTONIC when it rang the last tick
	LastNano  uint64 `json:"last_latency_ns"`    // wake latency of the last tick (0: the tick was pending)
	Warm      uint64 `json:"warm"`               // ticks seen while polling (spin or pre-wake)
	Cold      uint64 `json:"cold"`               // ticks that woke the module from FUTEX_WAIT
}

// Doorbell is a futex doorbell line.
type Doorbell struct {
	Word     uint32 `json:"word"`
	NeedWake uint32 `json:"need_wake"`
	Frame    uint64 `json:"frame"`
	Lease    uint64 `json:"lease"` // tick only: slot/lease info of the tick
}

// RingReport is the command ring of a module segment.
type RingReport struct {
	Offset         int    `json:"offset"`
	Capacity       uint64 `json:"capacity"`
	Head           uint64 `json:"head"`
	Tail           uint64 `json:"tail"`
	CommittedBytes uint64 `json:"committed_bytes"`
	FreeBytes      uint64 `json:"free_bytes"`
	ProdRecords    uint64 `json:"producer_records"`
	ProdBatches    uint64 `json:"producer_batches"`
	ProdFull       uint64 `json:"producer_full"`
	ConsRecords    uint64 `json:"consumer_records"`
	ConsBad        uint64 `json:"consumer_bad"`
	ConsResets     uint64 `json:"consumer_resets"`
}

// timeText says the time control for people: "running, speed 1",
// "PAUSED, speed 0.5, 3 steps pending", with ", replay" for a replay.
func timeText(t TimeControlReport) string {
	s := t.State
	if t.Paused {
		s = "PAUSED"
	}
	s += ", speed " + strconv.FormatFloat(t.Speed, 'g', -1, 64)
	if t.StepsPending > 0 {
		s += fmt.Sprintf(", %d steps pending", t.StepsPending)
	}
	if t.Replay {
		s += ", replay"
	}
	return s
}
