package record

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Report is what `engine dump FILE` shows of a recording: its header, its
// frames, its keyframe index, its sizes and compression, and whether every
// frame record checks and applies (Inspect reads them all).
type Report struct {
	Source        string           `json:"source"`
	StreamVersion int              `json:"stream_version"`
	Instance      string           `json:"instance"`
	Created       time.Time        `json:"created"`
	SchemaHash    string           `json:"schema_hash"`
	FramePeriodNs uint64           `json:"frame_period_ns"`
	KeyframeEvery uint32           `json:"keyframe_every"`
	ChunkCapacity int              `json:"chunk_capacity"`
	MaxChunks     int              `json:"max_chunks"`
	Components    []ReportColumn   `json:"components"`
	Singletons    []ReportColumn   `json:"singletons"`
	Frames        int              `json:"frames"`
	FirstFrame    uint64           `json:"first_frame"`
	LastFrame     uint64           `json:"last_frame"`
	Keyframes     []ReportKeyframe `json:"keyframe_index"`
	// IndexRebuilt: the file has no valid index record (its recorder was
	// killed, or its end is damaged); Damage: what ended the scan.
	IndexRebuilt bool   `json:"index_rebuilt"`
	Damage       string `json:"damage,omitempty"`
	// FileBytes is the file's size; RawBytes and StoredBytes the frame
	// payloads before and after compression; Ratio = RawBytes/StoredBytes.
	FileBytes   int64   `json:"file_bytes"`
	RawBytes    uint64  `json:"raw_bytes"`
	StoredBytes uint64  `json:"stored_bytes"`
	Ratio       float64 `json:"compression_ratio"`
	// Events and Batches are the recorded events and command batches.
	Events  int `json:"events"`
	Batches int `json:"batches"`
	// BadFrame is the first frame record that does not read or apply (""
	// when every one does).
	BadFrame string        `json:"bad_frame,omitempty"`
	PerFrame []ReportFrame `json:"per_frame"`
}

// ReportColumn is a component or singleton of the recorded schema.
type ReportColumn struct {
	Name   string `json:"name"`
	Size   uint32 `json:"size"`
	MaxLen uint32 `json:"max_len,omitempty"`
}

// ReportKeyframe is an entry of the keyframe index.
type ReportKeyframe struct {
	Frame  uint64 `json:"frame"`
	Offset int64  `json:"offset"`
}

// ReportFrame is one frame record's sizes.
type ReportFrame struct {
	Frame  uint64 `json:"frame"`
	Kind   string `json:"kind"`
	Stored uint32 `json:"stored"`
	Raw    uint32 `json:"raw"`
}

// ErrExists: Create was asked for a file that exists, without
// WriterOptions.Overwrite.
var ErrExists = errors.New("the file exists and would be overwritten")

// ErrNotRecording: the file at a recording's path is something else (not
// empty, not starting with a recording's header record): never
// overwritten, even with WriterOptions.Overwrite.
var ErrNotRecording = errors.New("the file is not a recording; it is never overwritten")

// CheckOverwrite returns nil when the file at path may be replaced by a
// new recording: it does not exist, is empty, is a recording (IsRecording),
// or is not a regular file (a FIFO, a device: writing destroys nothing).
// Anything else (another file, a directory) is ErrNotRecording.
func CheckOverwrite(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%w: %s is a directory", ErrNotRecording, path)
	case !fi.Mode().IsRegular():
		return nil // a FIFO or a device: written to, nothing is destroyed
	case fi.Size() == 0 || IsRecording(path):
		return nil
	}
	return fmt.Errorf("%w: %s (%d bytes) does not start with a recording's header record", ErrNotRecording, path, fi.Size())
}

// IsRecording reports whether the file at path starts like a recording
// (the magic and kind of a header record).
func IsRecording(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [5]byte
	n, _ := io.ReadFull(f, b[:])
	return n == 5 && string(b[:4]) == Magic && Kind(b[4]) == KindHeader
}

// Inspect reads every frame record of r (checksums, decoding, applying to
// an image from the first keyframe) and reports on the recording.
func Inspect(r *Reader) *Report {
	h := r.Header()
	g := h.Geometry
	rep := &Report{StreamVersion: StreamVersion, Instance: h.Instance, Created: time.Unix(0, h.Created).UTC(),
		SchemaHash: fmt.Sprintf("%#016x", h.SchemaHash()), FramePeriodNs: h.FramePeriod, KeyframeEvery: h.KeyframeEvery,
		ChunkCapacity: g.ChunkCapacity, MaxChunks: g.MaxChunks, Frames: len(r.Index()), IndexRebuilt: r.Rebuilt(),
		FileBytes: r.Size(), Components: []ReportColumn{}, Singletons: []ReportColumn{}, Keyframes: []ReportKeyframe{},
		PerFrame: make([]ReportFrame, 0, len(r.Index()))}
	for _, c := range g.Components {
		rep.Components = append(rep.Components, ReportColumn{Name: c.Name, Size: c.Size, MaxLen: c.MaxLen})
	}
	for _, s := range g.Singletons {
		rep.Singletons = append(rep.Singletons, ReportColumn{Name: s.Name, Size: s.Size})
	}
	if err := r.Damage(); err != nil {
		rep.Damage = err.Error()
	}
	im := NewImage(h)
	for i, e := range r.Index() {
		if i == 0 {
			rep.FirstFrame = e.Frame
		}
		rep.LastFrame = e.Frame
		if e.Kind == KindKeyframe {
			rep.Keyframes = append(rep.Keyframes, ReportKeyframe{Frame: e.Frame, Offset: e.Offset})
		}
		rep.RawBytes += uint64(e.Raw)
		rep.StoredBytes += uint64(e.Stored)
		rep.PerFrame = append(rep.PerFrame, ReportFrame{Frame: e.Frame, Kind: e.Kind.String(), Stored: e.Stored, Raw: e.Raw})
		if rep.BadFrame != "" {
			continue
		}
		f, err := r.Frame(i)
		if err == nil && (e.Kind == KindKeyframe || im.Valid) {
			err = im.Apply(f)
		}
		if err != nil {
			rep.BadFrame = fmt.Sprintf("frame %d: %v", e.Frame, err)
			continue
		}
		rep.Events += len(f.Events)
		rep.Batches += len(f.Batches)
	}
	if rep.StoredBytes > 0 {
		rep.Ratio = float64(rep.RawBytes) / float64(rep.StoredBytes)
	}
	return rep
}

// Err returns the report's problem as an error; nil only for an intact
// recording: at least one frame, every frame reads and applies, and the
// index record at its end is valid (`engine dump` exits 1 on any error:
// a frame that does not read or apply, damage that ended the scan, a
// missing or cut index, no frames).
func (rep *Report) Err() error {
	switch {
	case rep.BadFrame != "":
		return errors.New(rep.BadFrame)
	case rep.Damage != "":
		return fmt.Errorf("readable to frame %d of the recording, then: %s", rep.LastFrame, rep.Damage)
	case rep.Frames == 0:
		return errors.New("no frames recorded")
	case rep.IndexRebuilt:
		return fmt.Errorf("no valid index record at the end (the recorder was killed or the end was cut); frames %d..%d read", rep.FirstFrame, rep.LastFrame)
	}
	return nil
}

// Text writes the report for people.
func (rep *Report) Text(w io.Writer) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("recording %s\n", rep.Source)
	p("  stream version %d, instance %q, created %s\n", rep.StreamVersion, rep.Instance, rep.Created.Format(time.RFC3339Nano))
	p("  schema %s: %d components, %d singletons; chunks of %d, at most %d\n", rep.SchemaHash, len(rep.Components), len(rep.Singletons), rep.ChunkCapacity, rep.MaxChunks)
	for _, c := range rep.Components {
		if c.MaxLen != 0 {
			p("    component %-24s %5d B (variable, up to %d)\n", c.Name, c.Size, c.MaxLen)
		} else {
			p("    component %-24s %5d B\n", c.Name, c.Size)
		}
	}
	for _, s := range rep.Singletons {
		p("    singleton %-24s %5d B\n", s.Name, s.Size)
	}
	period := "unknown"
	if rep.FramePeriodNs != 0 {
		period = time.Duration(rep.FramePeriodNs).String()
	}
	p("  frame period %s; a keyframe every %d frames at most, or earlier once the deltas since the last one reach %v× its raw bytes\n", period, rep.KeyframeEvery, DefaultKeyframeBudget)
	p("  frames %d (%d .. %d), keyframes %d, events %d, command batches %d\n", rep.Frames, rep.FirstFrame, rep.LastFrame, len(rep.Keyframes), rep.Events, rep.Batches)
	p("  file %d B; frame payloads %d B raw, %d B stored: compression ratio %.2f\n", rep.FileBytes, rep.RawBytes, rep.StoredBytes, rep.Ratio)
	if rep.IndexRebuilt {
		p("  index: rebuilt by a scan (no valid index record: the recorder was killed or the end is damaged)\n")
	} else {
		p("  index: from the index record\n")
	}
	if rep.Damage != "" {
		p("  damage: %s\n", rep.Damage)
	}
	if rep.BadFrame != "" {
		p("  bad frame: %s\n", rep.BadFrame)
	}
	p("keyframe index (frame @ offset):\n")
	for _, k := range rep.Keyframes {
		p("  %d @ %d\n", k.Frame, k.Offset)
	}
	p("frames (frame kind stored raw):\n")
	for _, f := range rep.PerFrame {
		p("  %d %s %d %d\n", f.Frame, f.Kind, f.Stored, f.Raw)
	}
	return nil
}
