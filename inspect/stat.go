package inspect

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
)

// Sample is one read of an instance's world segment statistics (and, when
// given, its leases segment), taken at a point in time.
type Sample struct {
	At       time.Time
	Instance string
	Stats    WorldStats
	Latest   LatestReport
	// Frame and seq of every slot's header, to resolve reader pins.
	SlotFrames []uint64
	SlotSeqs   []uint64
	Readers    []ReaderReport
	Leases     []SlotLeaseReport
	// Modules are the module segments added with AddModule: their reader
	// lines (pins) and identities.
	Modules []*ModuleReport
	// Remote: the engine's modules on other hosts (asked over its control
	// socket: `engine stat`).
	Remote []ipc.RemoteModuleState
}

// AddModule reads a module segment (read-only) into the sample, so that
// Rates reports the module's lag: through its pin (its segment's reader
// line) or the leases the engine holds for it (holder bit = module slot).
func (s *Sample) AddModule(b []byte, o Options) error {
	if o.Alive == nil {
		o.Alive = shm.ProcessAlive
	}
	if len(b) > 0 && !aligned8(b) {
		b = append(make([]byte, 0, len(b)), b...)
	}
	m, err := layout.DecodeModule(b)
	if err != nil {
		return wrap(err)
	}
	if m.Header.Instance != s.Instance {
		return wrap(fmt.Errorf("%w: module segment of instance %q, world of %q", layout.ErrCorrupt, m.Header.Instance, s.Instance))
	}
	s.Modules = append(s.Modules, moduleReport(m, o, &Report{}))
	return nil
}

// TakeSample reads world (and leases, if non-nil) read-only. It validates
// both segments like Inspect and returns an error for corrupt input.
func TakeSample(world, leases []byte, at time.Time, o Options) (*Sample, error) {
	if o.Alive == nil {
		o.Alive = shm.ProcessAlive
	}
	if len(world) > 0 && !aligned8(world) {
		world = append(make([]byte, 0, len(world)), world...)
	}
	w, err := layout.DecodeWorld(world)
	if err != nil {
		return nil, wrap(err)
	}
	s := &Sample{At: at, Instance: w.Header.Instance, SlotFrames: make([]uint64, w.Slots), SlotSeqs: make([]uint64, w.Slots)}
	s.Stats, s.Latest = ReadWorldStats(w)
	for i := 0; i < w.Slots; i++ {
		so := w.SlotOff(i)
		s.SlotSeqs[i] = ld64(world, so+layout.SlotSeq)
		s.SlotFrames[i] = ld64(world, so+layout.SlotFrame)
	}
	if leases != nil {
		if !aligned8(leases) {
			leases = append(make([]byte, 0, len(leases)), leases...)
		}
		l, err := layout.DecodeLeases(leases)
		if err != nil {
			return nil, wrap(err)
		}
		if l.Header.Instance != w.Header.Instance {
			return nil, wrap(fmt.Errorf("%w: leases segment of instance %q, world of %q", layout.ErrCorrupt, l.Header.Instance, w.Header.Instance))
		}
		lr := leasesReport(l, o)
		s.Readers, s.Leases = lr.Readers, lr.SlotLeases
	}
	return s, nil
}

// StatLine is the rate view computed from two successive samples.
type StatLine struct {
	Instance              string  `json:"instance"`
	Time                  string  `json:"time"`
	IntervalNano          int64   `json:"interval_ns"`
	Published             bool    `json:"published"`
	Frame                 uint64  `json:"frame"`
	Publishes             uint64  `json:"publishes"`
	FrameRate             float64 `json:"frame_rate"` // publishes per second over the interval
	LastPublish           string  `json:"last_publish"`
	LastPublishAge        int64   `json:"last_publish_age_ns"`
	Skipped               uint64  `json:"skipped"`
	SkippedDelta          uint64  `json:"skipped_delta"`
	Aborted               uint64  `json:"aborted"`
	SnapshotsRefused      uint64  `json:"snapshots_refused"` // snapshots refused a due convoy group (no free slot, or no memory)
	SnapshotsRefusedDelta uint64  `json:"snapshots_refused_delta"`
	// The world segment's memory (WorldStats): bytes held and the limit
	// now, and over the interval the slots trimmed, the snapshots refused
	// for memory (part of snapshots_refused) and the publishes skipped for
	// memory (part of skipped).
	ShmHeld               uint64  `json:"shm_held_bytes"`
	ShmHeldDelta          int64   `json:"shm_held_delta"` // may be negative: trims give memory back
	ShmLimit              uint64  `json:"shm_limit_bytes"`
	Trimmed               uint64  `json:"slots_trimmed"`
	TrimmedDelta          uint64  `json:"slots_trimmed_delta"`
	SnapshotsNoSpace      uint64  `json:"snapshots_refused_no_space"`
	SnapshotsNoSpaceDelta uint64  `json:"snapshots_refused_no_space_delta"`
	SkippedNoSpace        uint64  `json:"skipped_no_space"`
	SkippedNoSpaceDelta   uint64  `json:"skipped_no_space_delta"`
	BytesPerSec           float64 `json:"bytes_per_sec"`
	LastPublishNano       uint64  `json:"last_publish_ns"`
	FrameNano             uint64  `json:"frame_ns"`
	// Time is the engine's time control (paused, speed, steps pending).
	TimeControl TimeControlReport `json:"time_control"`
	Readers     []ReaderLag       `json:"readers"`
	// Recorder is the flight recorder over the interval; null when the
	// engine does not record.
	Recorder *RecorderStatLine `json:"recorder"`
	// Modules are the statistics blocks of the instance's module segments.
	Modules []ModuleStatLine `json:"modules"`

	// Remote: the engine's modules on other hosts with their lag (its
	// time-control status; docs/ARCHITECTURE.md "Beyond one machine").
	Remote []ipc.RemoteModuleState `json:"remote_modules,omitempty"`
}

// RecorderStatLine is the flight recorder in a stat line: its totals, what
// the interval added, and the file's growth per second (bytes written to
// the file, compressed).
type RecorderStatLine struct {
	RecorderReport
	FramesDelta  uint64  `json:"frames_delta"`
	DroppedDelta uint64  `json:"dropped_delta"`
	FileBytesSec float64 `json:"file_bytes_per_sec"`
}

// ModuleStatLine is one module's statistics block (written by the engine
// into its segment) in a stat line.
type ModuleStatLine struct {
	Slot  int    `json:"slot"`
	Name  string `json:"name"`
	PID   uint32 `json:"pid"`
	Alive bool   `json:"alive"`
	// RunsPerSec is the rate of dispatched ticks over the interval (0 when
	// the previous sample had no block of the same module).
	RunsPerSec float64            `json:"runs_per_sec"`
	Stats      *ModuleStatsReport `json:"stats"` // null: not written yet
}

// ReaderLag is how far one reader is behind the latest frame.
type ReaderLag struct {
	Kind   string `json:"kind"`  // "external" (an entry of the leases segment's reader table) or "module"
	Index  int    `json:"index"` // reader entry, or module slot
	Name   string `json:"name"`
	PID    uint32 `json:"pid"`
	Alive  bool   `json:"alive"`
	Via    string `json:"via"`        // "pin", "lease" or "" when the reader holds nothing
	Lag    *int64 `json:"lag_frames"` // latest frame - frame held; null when nothing is held
	HBAge  int64  `json:"heartbeat_age_ns"`
	Leased []int  `json:"leased_slots"`
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0 // counters restarted (new segment): no meaningful delta
	}
	return a - b
}

// Rates computes the stat line between prev and cur (cur later).
func Rates(prev, cur *Sample) StatLine {
	dt := cur.At.Sub(prev.At)
	st := StatLine{
		Remote:                cur.Remote,
		Instance:              cur.Instance,
		Time:                  cur.At.UTC().Format(time.RFC3339Nano),
		IntervalNano:          int64(dt),
		Published:             cur.Latest.Published,
		Frame:                 cur.Latest.Frame,
		Publishes:             cur.Stats.Publishes,
		Skipped:               cur.Stats.Skipped,
		SkippedDelta:          sub(cur.Stats.Skipped, prev.Stats.Skipped),
		Aborted:               cur.Stats.Aborted,
		SnapshotsRefused:      cur.Stats.SnapshotsRefused,
		SnapshotsRefusedDelta: sub(cur.Stats.SnapshotsRefused, prev.Stats.SnapshotsRefused),
		ShmHeld:               cur.Stats.ShmHeld,
		ShmHeldDelta:          int64(cur.Stats.ShmHeld - prev.Stats.ShmHeld),
		ShmLimit:              cur.Stats.ShmLimit,
		Trimmed:               cur.Stats.Trimmed,
		TrimmedDelta:          sub(cur.Stats.Trimmed, prev.Stats.Trimmed),
		SnapshotsNoSpace:      cur.Stats.SnapshotsNoSpace,
		SnapshotsNoSpaceDelta: sub(cur.Stats.SnapshotsNoSpace, prev.Stats.SnapshotsNoSpace),
		SkippedNoSpace:        cur.Stats.SkippedNoSpace,
		SkippedNoSpaceDelta:   sub(cur.Stats.SkippedNoSpace, prev.Stats.SkippedNoSpace),
		LastPublish:           FormatUnixNano(int64(cur.Stats.HeartbeatNano)),
		LastPublishNano:       cur.Stats.LastPublishNano,
		FrameNano:             cur.Stats.FrameNano,
		TimeControl:           cur.Stats.Time,
		Readers:               []ReaderLag{},
		Recorder:              recorderLine(prev.Stats.Recorder, cur.Stats.Recorder, dt),
		Modules:               []ModuleStatLine{},
	}
	if cur.Stats.HeartbeatNano != 0 {
		st.LastPublishAge = cur.At.UnixNano() - int64(cur.Stats.HeartbeatNano)
	}
	if sec := dt.Seconds(); sec > 0 {
		st.FrameRate = float64(sub(cur.Stats.Publishes, prev.Stats.Publishes)) / sec
		st.BytesPerSec = float64(sub(cur.Stats.BytesCopied, prev.Stats.BytesCopied)) / sec
	}
	lag := func(rl *ReaderLag, pinned bool, pinSlot int, pinSeq uint64, holder int) {
		held, ok := uint64(0), false
		if pinned && pinSlot < len(cur.SlotFrames) && cur.SlotSeqs[pinSlot] == pinSeq {
			held, ok, rl.Via = cur.SlotFrames[pinSlot], true, "pin"
		}
		for _, l := range cur.Leases {
			for _, h := range l.Holders {
				if holder < 0 || h != holder {
					continue
				}
				rl.Leased = append(rl.Leased, l.Slot)
				if !ok || l.Frame < held {
					held, ok, rl.Via = l.Frame, true, "lease"
				}
			}
		}
		if ok && cur.Latest.Published {
			d := int64(cur.Latest.Frame - held)
			rl.Lag = &d
		} else {
			rl.Via = ""
		}
	}
	for _, r := range cur.Readers {
		rl := ReaderLag{Kind: "external", Index: r.Index, Name: r.Name, PID: r.PID, Alive: r.Alive, Leased: []int{}}
		if r.HeartbeatNano != 0 {
			rl.HBAge = cur.At.UnixNano() - int64(r.HeartbeatNano)
		}
		lag(&rl, r.Pinned, r.PinSlot, r.PinSeq, -1) // external readers hold no leases
		st.Readers = append(st.Readers, rl)
	}
	for _, m := range cur.Modules {
		rl := ReaderLag{Kind: "module", Index: int(m.Slot), Name: m.Name, PID: m.PID, Alive: m.Alive, Leased: []int{}}
		if m.HeartbeatNano != 0 {
			rl.HBAge = cur.At.UnixNano() - int64(m.HeartbeatNano)
		}
		lag(&rl, m.Reader.Pinned, m.Reader.PinSlot, m.Reader.PinSeq, int(m.Slot))
		st.Readers = append(st.Readers, rl)
		ml := ModuleStatLine{Slot: int(m.Slot), Name: m.Name, PID: m.PID, Alive: m.Alive, Stats: m.Stats}
		for _, pm := range prev.Modules {
			if pm.Slot == m.Slot && pm.Name == m.Name && pm.Stats != nil && m.Stats != nil && dt > 0 {
				ml.RunsPerSec = float64(sub(m.Stats.Runs, pm.Stats.Runs)) / dt.Seconds()
			}
		}
		st.Modules = append(st.Modules, ml)
	}
	return st
}

// StatText renders one stat line for humans.
func StatText(w io.Writer, s StatLine) error {
	var b strings.Builder
	if s.Published {
		fmt.Fprintf(&b, "%s  frame %d  %.1f fps  last publish %s ago  skipped %d (+%d)  aborted %d  snapshots refused %d (+%d)  %s/s  publish %s  frame %s",
			s.Instance, s.Frame, s.FrameRate, dur(s.LastPublishAge), s.Skipped, s.SkippedDelta,
			s.Aborted, s.SnapshotsRefused, s.SnapshotsRefusedDelta, humanBytes(s.BytesPerSec), dur(s.LastPublishNano), dur(s.FrameNano))
		fmt.Fprintf(&b, "\n  shm held %s (%+d)  limit %s  trimmed %d (+%d)  snapshots refused for memory %d (+%d)  publishes skipped for memory %d (+%d)",
			humanBytes(float64(s.ShmHeld)), s.ShmHeldDelta, limitText(s.ShmLimit), s.Trimmed, s.TrimmedDelta,
			s.SnapshotsNoSpace, s.SnapshotsNoSpaceDelta, s.SkippedNoSpace, s.SkippedNoSpaceDelta)
		fmt.Fprintf(&b, "\n  time %s", timeText(s.TimeControl))
	} else {
		fmt.Fprintf(&b, "%s  nothing published yet", s.Instance)
	}
	if r := s.Recorder; r != nil {
		fmt.Fprintf(&b, "\n  recorder %s  frames %d (+%d, %d keyframes)  dropped %d (+%d)  file %s  %s/s",
			r.State, r.Frames, r.FramesDelta, r.Keyframes, r.Dropped, r.DroppedDelta, humanBytes(float64(r.FileBytes)), humanBytes(r.FileBytesSec))
	}
	for _, r := range s.Readers {
		state := "alive"
		if !r.Alive {
			state = "dead"
		}
		// A reader's lag is of the frame it holds now; between its ticks a
		// module holds none ("idle"), and its lag is that of its last
		// tick, from the statistics the engine writes (the "stats" line).
		lag := "idle (holds no frame)"
		if r.Lag != nil {
			lag = fmt.Sprintf("lag %d (%s)", *r.Lag, r.Via)
		} else if x := moduleStats(s.Modules, r); x != nil {
			lag = fmt.Sprintf("idle (holds no frame): last tick's lag %d (max %d)", x.LagFrames, x.LagMaxFrames)
		}
		kind := "reader"
		if r.Kind == "module" {
			kind = "module"
		}
		fmt.Fprintf(&b, "\n  %s %d %s pid %d %s %s", kind, r.Index, orDash(r.Name), r.PID, state, lag)
	}
	for _, r := range s.Remote {
		fmt.Fprintf(&b, "\n  remote %s on mirror %s (incarnation %x): batches %d  duplicates %d  applied %d  rejected %d  lag %d frames (at frame %d)",
			r.Module, orDash(r.Mirror), r.Incarnation, r.Batches, r.Duplicates, r.Applied, r.Rejected, r.LagFrames, r.LastFrame)
	}
	for _, m := range s.Modules {
		x := m.Stats
		if x == nil {
			fmt.Fprintf(&b, "\n  stats %d %s: not written yet", m.Slot, orDash(m.Name))
			continue
		}
		fmt.Fprintf(&b, "\n  stats %d %s: %s  runs %d (%.1f/s)  late %d  failures %d  skipped %d  breaker trips %d  tick p50 %v p99 %v max %v  lag %d (max %d)  snapshots %d (catch-ups %d)  events %d lost %d  applied %d  rejected %d%s",
			m.Slot, orDash(m.Name), x.State, x.Runs, m.RunsPerSec, x.Late, x.Failures, x.Skipped, x.BreakerTrips,
			dur(x.TickP50Nano), dur(x.TickP99Nano), dur(x.TickMaxNano), x.LagFrames, x.LagMaxFrames,
			x.Snapshots, x.CatchUps, x.EventsDelivered, x.EventsLost, x.Applied, x.Rejected, rejectList(x.RejectedByReason))
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// moduleStats returns the statistics of reader r when it is a module with
// statistics written, else nil.
func moduleStats(mods []ModuleStatLine, r ReaderLag) *ModuleStatsReport {
	if r.Kind != "module" {
		return nil
	}
	for _, m := range mods {
		if m.Slot == r.Index && m.Name == r.Name {
			return m.Stats
		}
	}
	return nil
}

func humanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f%s", v, units[i])
}

// recorderLine is the recorder's part of a stat line (nil when the engine
// does not record).
func recorderLine(prev, cur RecorderReport, dt time.Duration) *RecorderStatLine {
	if cur.State == layout.RecorderOff.String() {
		return nil
	}
	r := &RecorderStatLine{RecorderReport: cur, FramesDelta: sub(cur.Frames, prev.Frames), DroppedDelta: sub(cur.Dropped, prev.Dropped)}
	if dt > 0 {
		r.FileBytesSec = float64(sub(cur.FileBytes, prev.FileBytes)) / dt.Seconds()
	}
	return r
}
