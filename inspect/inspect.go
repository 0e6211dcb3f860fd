package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
)

// Options select what Inspect decodes.
type Options struct {
	// Chunks adds the header of every chunk block in use to each slot
	// (rows, alive, structural and per-component versions). It can be large.
	Chunks bool
	// Alive reports whether a process (pid, start time) is alive; nil means
	// shm.ProcessAlive. Tests inject a fixed answer for deterministic output.
	Alive func(pid uint32, start uint64) bool
}

// ErrInspect prefixes every error returned by this package; the layout error
// that caused it (layout.ErrBadMagic, layout.ErrCorrupt, ...) is wrapped too.
var ErrInspect = errors.New("fdp/inspect")

func wrap(err error) error { return fmt.Errorf("%w: %w", ErrInspect, err) }

// Inspect decodes segment b (any kind) with default options.
func Inspect(b []byte) (*Report, error) { return InspectWith(b, Options{}) }

// InspectWith decodes segment b read-only: it validates the common header,
// dispatches on the kind and decodes the kind with the layout decoders. A
// corrupt, truncated or foreign segment yields an error wrapping the layout
// error; a segment that is not ready yet yields a header-only report with a
// note. It never writes to b and never panics.
func InspectWith(b []byte, o Options) (*Report, error) {
	if o.Alive == nil {
		o.Alive = shm.ProcessAlive
	}
	if len(b) > 0 && !aligned8(b) {
		// Only slices handed over by callers (fuzzers, files read into odd
		// offsets) can be misaligned; mappings are page aligned. The atomic
		// helpers need aligned words, so read a private aligned copy.
		b = append(make([]byte, 0, len(b)), b...)
	}
	h, err := layout.DecodeHeader(b)
	if err != nil && !(errors.Is(err, layout.ErrNotReady) && h != nil) {
		return nil, wrap(err)
	}
	r := &Report{Header: headerReport(h, o), Notes: []string{}, Problems: []string{}}
	if !h.Ready {
		r.Notes = append(r.Notes, "segment not ready (being initialised, or its creator died first): kind detail not decoded")
		if h.Kind < layout.KindWorld || h.Kind > layout.KindModule {
			return nil, wrap(fmt.Errorf("%w: %s", layout.ErrBadKind, layout.KindName(h.Kind)))
		}
		return r, nil
	}
	switch h.Kind {
	case layout.KindWorld:
		w, err := layout.DecodeWorld(b)
		if err != nil {
			return nil, wrap(err)
		}
		r.World = worldReport(w, o, r)
	case layout.KindLeases:
		l, err := layout.DecodeLeases(b)
		if err != nil {
			return nil, wrap(err)
		}
		r.Leases = leasesReport(l, o)
	case layout.KindEvents:
		e, err := layout.DecodeEvents(b)
		if err != nil {
			return nil, wrap(err)
		}
		r.Events = eventsReport(e, r)
	case layout.KindModule:
		m, err := layout.DecodeModule(b)
		if err != nil {
			return nil, wrap(err)
		}
		r.Module = moduleReport(m, o, r)
	default:
		return nil, wrap(fmt.Errorf("%w: %s is not a kind this build knows", layout.ErrBadKind, layout.KindName(h.Kind)))
	}
	return r, nil
}

// aligned8 reports whether b starts on an 8-byte boundary.
// Invariant: only the address of b[0] is inspected; nothing is dereferenced
// and no pointer is kept.
func aligned8(b []byte) bool { return uintptr(unsafe.Pointer(unsafe.SliceData(b)))&7 == 0 }

// Every read of a live word goes through these helpers. Callers pass offsets
// validated against the decoded geometry (naturally aligned by the layout).
func ld64(b []byte, off int) uint64 { return layout.Load64(b, off) }
func ld32(b []byte, off int) uint32 { return layout.Load32(b, off) }

// ldString reads an n-byte (multiple of 8, 8-aligned) NUL-padded name field
// that another process may write, word by word with atomic loads.
func ldString(b []byte, off, n int) string {
	buf := make([]byte, n)
	for i := 0; i < n; i += 8 {
		w := ld64(b, off+i)
		for j := 0; j < 8; j++ {
			buf[i+j] = byte(w >> (8 * j))
		}
	}
	return cString(buf)
}

// cString cuts a NUL-padded field at the first NUL and makes it valid UTF-8.
func cString(buf []byte) string {
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	if !utf8.Valid(buf) {
		return strings.ToValidUTF8(string(buf), "?")
	}
	return string(buf)
}

func hex64(v uint64) string                     { return fmt.Sprintf("0x%016x", v) }
func mask(v [layout.MaxMaskWords]uint64) string { return layout.FormatMask(v) }

// FormatUnixNano renders Unix nanoseconds as RFC 3339 (UTC, nanoseconds), or
// "-" for zero.
func FormatUnixNano(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

var sectionNames = map[uint32]string{
	layout.SecComponents: "components",
	layout.SecSlots:      "frame_slots",
	layout.SecReaders:    "readers",
	layout.SecSlotLeases: "slot_leases",
	layout.SecEventLog:   "event_log",
	layout.SecRing:       "command_ring",
	layout.SecFields:     "fields",
	layout.SecSingletons: "singletons",
}

func headerReport(h *layout.Header, o Options) HeaderReport {
	hr := HeaderReport{
		MagicOK:      true,
		Version:      h.Version,
		Kind:         layout.KindName(h.Kind),
		KindID:       h.Kind,
		Instance:     h.Instance,
		TotalSize:    h.TotalSize,
		SchemaHash:   hex64(h.SchemaHash),
		CreatorPID:   h.CreatorPID,
		CreatorStart: h.CreatorTime,
		CreatorAlive: o.Alive(h.CreatorPID, h.CreatorTime),
		Created:      FormatUnixNano(h.CreatedNano),
		CreatedNano:  h.CreatedNano,
		Ready:        h.Ready,
		Sections:     make([]SectionReport, 0, len(h.Sections)),
	}
	for _, s := range h.Sections {
		name, ok := sectionNames[s.ID]
		if !ok {
			name = fmt.Sprintf("section(%d)", s.ID)
		}
		hr.Sections = append(hr.Sections, SectionReport{ID: s.ID, Name: name, Count: s.Count, Offset: s.Offset, Size: s.Size})
	}
	return hr
}

// ReadWorldStats reads the statistics line and the latest word of a decoded
// world segment with atomic loads.
func ReadWorldStats(w *layout.World) (WorldStats, LatestReport) {
	b := w.B
	st := WorldStats{
		Publishes:        ld64(b, layout.OffWStatPublishes),
		Skipped:          ld64(b, layout.OffWStatSkipped),
		LastPublishNano:  ld64(b, layout.OffWStatLastNanos),
		BytesCopied:      ld64(b, layout.OffWStatBytes),
		ChunksCopied:     ld64(b, layout.OffWStatChunks),
		HeartbeatNano:    ld64(b, layout.OffWStatHeartbeat),
		Aborted:          ld64(b, layout.OffWStatAborted),
		FrameNano:        ld64(b, layout.OffWStatFrameNanos),
		SnapshotsRefused: ld64(b, layout.OffWStatSnapRefused),
		SnapshotsNoSpace: ld64(b, layout.OffWStatSnapNoSpace),
		SkippedNoSpace:   ld64(b, layout.OffWStatPubNoSpace),
		ShmHeld:          ld64(b, layout.OffWStatBacked),
		ShmLimit:         ld64(b, layout.OffWStatShmLimit),
		Trimmed:          ld64(b, layout.OffWStatTrimmed),
		Recorder:         recorderReport(b),
		Time:             timeControlReport(b),
	}
	var lr LatestReport
	if f, s, ok := layout.UnpackLatest(ld64(b, layout.OffWLatest)); ok {
		lr = LatestReport{Published: true, Frame: f, Slot: s}
	}
	return st, lr
}

func worldReport(w *layout.World, o Options, r *Report) *WorldReport {
	wr := &WorldReport{
		SlotCount:       w.Slots,
		ComponentCount:  len(w.Components),
		ChunkCapacity:   w.ChunkCapacity,
		MaxChunks:       w.MaxChunks,
		ChunkStride:     w.ChunkStride,
		SlotStride:      w.SlotStride,
		ChunkHeaderSize: w.ChunkHeaderSize,
		FixedBytes:      w.FixedBytes(),
		Components:      make([]ComponentReport, len(w.Components)),
		Slots:           make([]SlotReport, w.Slots),
	}
	for i, c := range w.Components {
		wr.Components[i] = ComponentReport{ID: i, Name: c.Name, Size: c.Size, Align: c.Align, Fingerprint: hex64(c.Fingerprint), ColumnOffset: w.ColumnOff[i],
			Kind: componentKind(c), MaxLen: c.MaxLen, ArenaPerChunk: w.ArenaSize(i), Fields: fieldReports(c.Fields)}
	}
	wr.Stats, wr.Latest = ReadWorldStats(w)
	wr.Singletons = singletonTable(w)
	if lr, ok := latestValues(w, wr.Singletons, wr.Components); ok {
		wr.Latest = lr // the frame the values are of
	}
	if wr.Latest.Published && wr.Latest.Slot >= w.Slots {
		r.Problems = append(r.Problems, fmt.Sprintf("latest word names slot %d of %d", wr.Latest.Slot, w.Slots))
	}
	for s := range wr.Slots {
		sr := readSlot(w, s, o)
		sr.Latest = wr.Latest.Published && wr.Latest.Slot == s
		if sr.Error != "" && !sr.Writing && sr.Stable {
			r.Problems = append(r.Problems, fmt.Sprintf("slot %d: %s", s, sr.Error))
		}
		wr.Slots[s] = sr
		wr.SlotsBackedBytes += sr.BackedBytes
	}
	return wr
}

// readSlot reads slot s under the seqlock rule: seq, fields, seq again; it
// retries a few times when the engine rewrote the slot meanwhile.
func readSlot(w *layout.World, s int, o Options) SlotReport {
	b := w.B
	so := w.SlotOff(s)
	var sr SlotReport
	for try := 0; try < 4; try++ {
		si := w.ReadSlotInfo(s)
		q := si.Seq
		sr = SlotReport{
			Index: s, Seq: q, Writing: q&1 == 1, Frame: si.Frame, Version: si.Version, Mask: mask(si.Mask),
			Chunks: si.Chunks, Entities: si.Entities, Alive: si.Alive, PublishNano: si.PubNanos,
			BytesCopied: si.Bytes, ChunksCopied: si.ChunksCopied,
		}
		var bm [layout.MaxMaskWords]uint64
		for j := range bm {
			bm[j] = ld64(b, so+layout.SlotBackMaskOff(j))
		}
		bc := ld32(b, so+layout.SlotBackChunks)
		sr.BackMask, sr.BackChunks = mask(bm), bc
		sr.BackedBytes = w.SlotSpanBytes(s, bm, int(min(bc, uint32(w.MaxChunks))))
		if err := w.ValidateSlotInfo(si); err != nil {
			sr.Error = err.Error()
		} else if si.Chunks > bc || beyond(si.Mask, bm) {
			// B2: a complete slot's chunks and components are within its
			// backing (readers would read holes).
			sr.Error = fmt.Sprintf("slot holds %d chunks of mask %s beyond its backing (%d chunks of mask %s)", si.Chunks, mask(si.Mask), bc, mask(bm))
		} else if o.Chunks {
			// Only within the backing (checked above): on tmpfs, reading
			// a hole of a mapping allocates a page.
			sr.ChunkDetail = readChunks(w, s, int(si.Chunks))
		}
		if ld64(b, so+layout.SlotSeq) == q {
			sr.Stable = true
			break
		}
	}
	return sr
}

func readChunks(w *layout.World, s, n int) []ChunkReport {
	b := w.B
	out := make([]ChunkReport, n)
	for c := range out {
		co := w.ChunkOff(s, c)
		cr := ChunkReport{
			Index:             c,
			StructuralVersion: ld64(b, co+layout.ChunkStructVersion),
			Rows:              ld32(b, co+layout.ChunkRows),
			Alive:             ld32(b, co+layout.ChunkAlive),
			Versions:          make([]uint64, len(w.Components)),
		}
		for k := range cr.Versions {
			cr.Versions[k] = ld64(b, w.ChunkVersionOff(s, c, k))
		}
		out[c] = cr
	}
	return out
}

func leasesReport(l *layout.Leases, o Options) *LeasesReport {
	b := l.B
	lr := &LeasesReport{ReaderEntries: l.Readers, SlotEntries: l.Slots, Readers: []ReaderReport{}, SlotLeases: make([]SlotLeaseReport, l.Slots)}
	for i := 0; i < l.Readers; i++ {
		ro := l.ReaderOff(i)
		pid := ld32(b, ro+layout.ReaderPID)
		if pid == 0 {
			continue
		}
		rr := ReaderReport{
			Index:         i,
			PID:           pid,
			Flags:         ld32(b, ro+layout.ReaderFlags),
			StartTime:     ld64(b, ro+layout.ReaderStart),
			HeartbeatNano: ld64(b, ro+layout.ReaderHeartbeat),
			Name:          ldString(b, ro+layout.ReaderName, layout.ReaderNameLen),
			Pins:          ld64(b, ro+layout.ReaderPins),
			Retries:       ld64(b, ro+layout.ReaderRetries),
			PinSlot:       -1,
		}
		rr.Alive = o.Alive(pid, rr.StartTime)
		if s, q, ok := layout.UnpackPin(ld64(b, ro+layout.ReaderPin)); ok {
			rr.Pinned, rr.PinSlot, rr.PinSeq = true, s, q
		}
		lr.Readers = append(lr.Readers, rr)
	}
	for s := range lr.SlotLeases {
		lo := l.LeaseOff(s)
		h := layout.GetModuleSet(b, lo+layout.LeaseHolders)
		sl := SlotLeaseReport{
			Slot:       s,
			Holders:    []int{},
			Frame:      ld64(b, lo+layout.LeaseFrame),
			Mask:       mask(leaseMask(b, lo)),
			EngineRefs: ld32(b, lo+layout.LeaseEngine),
		}
		for r := h.Next(0); r >= 0; r = h.Next(r + 1) {
			sl.Holders = append(sl.Holders, r)
		}
		lr.SlotLeases[s] = sl
	}
	return lr
}

// readPair reads a double-buffered {seq, position} pair behind generation
// word genOff (load gen, load pair[gen&1], load gen again; retry on change).
func readPair(b []byte, genOff, pairsOff int) (gen, seq, pos uint64, stable bool) {
	for try := 0; try < 4; try++ {
		gen = ld64(b, genOff)
		po := pairsOff + int(gen&1)*layout.EventPairSize
		seq, pos = ld64(b, po), ld64(b, po+8)
		if ld64(b, genOff) == gen {
			return gen, seq, pos, true
		}
	}
	return gen, seq, pos, false
}

func eventsReport(e *layout.Events, r *Report) *EventsReport {
	b := e.B
	er := &EventsReport{Capacity: e.Capacity, MaxPayload: e.MaxPayload, AreaOffset: e.AreaOff}
	var ok1, ok2 bool
	er.CommitGen, er.NextSeq, er.EndPos, ok1 = readPair(b, layout.OffECommitGen, layout.OffECommitPairs)
	er.OldestGen, er.OldestSeq, er.OldestPos, ok2 = readPair(b, layout.OffEOldestGen, layout.OffEOldestPairs)
	if !ok1 || !ok2 {
		r.Notes = append(r.Notes, "event log positions changed while being read (live writer)")
	}
	switch {
	case er.EndPos < er.OldestPos || er.EndPos-er.OldestPos > uint64(e.Capacity):
		r.Problems = append(r.Problems, fmt.Sprintf("event log: oldest position %d and end position %d are inconsistent with capacity %d", er.OldestPos, er.EndPos, e.Capacity))
	case er.NextSeq < er.OldestSeq:
		r.Problems = append(r.Problems, fmt.Sprintf("event log: next seq %d before oldest seq %d", er.NextSeq, er.OldestSeq))
	default:
		er.Retained, er.RetainedBytes = er.NextSeq-er.OldestSeq, er.EndPos-er.OldestPos
	}
	er.Stats = EventsStats{
		Events:         ld64(b, layout.OffEStatEvents),
		PayloadBytes:   ld64(b, layout.OffEStatBytes),
		Commits:        ld64(b, layout.OffEStatCommits),
		Rejected:       ld64(b, layout.OffEStatReject),
		LastFrame:      ld64(b, layout.OffEStatFrame),
		LastCommitNano: ld64(b, layout.OffEStatNanos),
	}
	return er
}

func moduleReport(m *layout.Module, o Options, r *Report) *ModuleReport {
	b := m.B
	mr := &ModuleReport{
		Slot:          m.Info.Slot,
		Name:          m.Info.Name,
		Tier:          m.Info.Tier,
		TierName:      layout.ModuleTierName(m.Info.Tier),
		Frequency:     m.Info.Frequency,
		Group:         m.Info.Group,
		Mask:          mask(m.Info.Mask),
		PID:           ld32(b, layout.OffMPID),
		StartTime:     ld64(b, layout.OffMStartTime),
		HeartbeatNano: ld64(b, layout.OffMHeartbeat),
		Tick: Doorbell{
			Word: ld32(b, layout.OffMTick), NeedWake: ld32(b, layout.OffMTickNeedWake),
			Frame: ld64(b, layout.OffMTickFrame), Lease: ld64(b, layout.OffMTickLease),
		},
		Done: Doorbell{
			Word: ld32(b, layout.OffMDone), NeedWake: ld32(b, layout.OffMDoneNeedWake),
			Frame: ld64(b, layout.OffMDoneFrame),
		},
		Wake: TickWake{
			StampNano: ld64(b, layout.OffMTickStamp), LastNano: ld64(b, layout.OffMWakeNanos),
			Warm: ld64(b, layout.OffMWakeWarm), Cold: ld64(b, layout.OffMWakeCold),
		},
		Reader: PinReport{
			Pins: ld64(b, layout.OffMPinCount), Retries: ld64(b, layout.OffMPinRetries), LastNano: ld64(b, layout.OffMPinNanos),
		},
	}
	if s, q, ok := layout.UnpackPin(ld64(b, layout.OffMPin)); ok {
		mr.Reader.Pinned, mr.Reader.PinSlot, mr.Reader.PinSeq = true, s, q
	}
	mr.Alive = mr.PID != 0 && o.Alive(mr.PID, mr.StartTime)
	ro := m.RingOff
	rg := RingReport{
		Offset:      ro,
		Capacity:    uint64(m.RingCapacity),
		ProdRecords: ld64(b, ro+layout.RingOffProdRecords),
		ProdBatches: ld64(b, ro+layout.RingOffProdBatches),
		ProdFull:    ld64(b, ro+layout.RingOffProdFull),
		ConsRecords: ld64(b, ro+layout.RingOffConsRecords),
		ConsBad:     ld64(b, ro+layout.RingOffConsBad),
		ConsResets:  ld64(b, ro+layout.RingOffConsResets),
	}
	// Head then tail, then head again: with the consumer idle meanwhile the
	// pair is one the ring really held (tail only grows).
	for try := 0; try < 4; try++ {
		rg.Head = ld64(b, ro+layout.RingOffHead)
		rg.Tail = ld64(b, ro+layout.RingOffTail)
		if ld64(b, ro+layout.RingOffHead) == rg.Head {
			break
		}
	}
	if err := layout.CheckRingIndices(rg.Head, rg.Tail, rg.Capacity); err != nil {
		r.Problems = append(r.Problems, "command ring: "+err.Error())
	} else {
		rg.CommittedBytes = rg.Tail - rg.Head
		rg.FreeBytes = rg.Capacity - rg.CommittedBytes
	}
	mr.Ring = rg
	switch st, err := ReadModuleStats(b); {
	case errors.Is(err, layout.ErrNoModStats):
		r.Notes = append(r.Notes, "statistics block not written by the engine yet")
	case err != nil:
		r.Problems = append(r.Problems, "statistics block: "+err.Error())
	default:
		mr.Stats = st
	}
	return mr
}

// ReadModuleStats decodes the statistics block of module segment b (at
// least layout.HeaderSize bytes, 8-aligned) read-only: the engine's
// counters, tick percentiles computed from its histogram
// (layout.TickPercentile), rejects by reason named by code. A block the
// engine never wrote is layout.ErrNoModStats.
func ReadModuleStats(b []byte) (*ModuleStatsReport, error) {
	s, stable, err := layout.DecodeModStats(b)
	if err != nil {
		return nil, err
	}
	r := &ModuleStatsReport{
		Version: layout.ModStatsVersion, Stable: stable, Frame: s.Frame, State: s.State.String(), FailStreak: s.FailStreak,
		Runs: s.Runs, Late: s.Late, Failures: s.Failures, Skipped: s.Skipped, Overruns: s.Overruns, Revoked: s.Revoked,
		BreakerTrips: s.BreakerTrips, BreakerOpenUntil: FormatUnixNano(int64(min(s.BreakerUntil, 1<<63-1))),
		BreakerOpenUntilNano: s.BreakerUntil, Applied: s.Applied, Rejected: s.Rejected, RejectedByReason: []RejectCount{},
		Snapshots: s.Snapshots, CatchUps: s.CatchUps, EventsDelivered: s.EventsDelivered, EventsLost: s.EventsLost,
		LagFrames: s.LagFrames, LagMaxFrames: s.LagMax, LastTickFrame: s.LastTickFrame, Joins: s.Joins, Deaths: s.Deaths,
		Ticks: s.Ticks, TickMaxNano: s.TickMax, TickLastNano: s.TickLast, TickHistogram: []TickBucket{},
		TickP50Nano: layout.TickPercentile(&s.TickHist, s.TickMax, 50),
		TickP99Nano: layout.TickPercentile(&s.TickHist, s.TickMax, 99),
	}
	if s.Ticks > 0 {
		r.TickMeanNano = s.TickSum / s.Ticks
	}
	for i, n := range s.RejectedByReason {
		if n > 0 {
			r.RejectedByReason = append(r.RejectedByReason, RejectCount{Reason: layout.RejectReasonName(i), Code: i, Count: n})
		}
	}
	for i, n := range s.TickHist {
		if n > 0 {
			r.TickHistogram = append(r.TickHistogram, TickBucket{UpperNano: uint64(1) << uint(i), Count: n})
		}
	}
	return r, nil
}

// leaseMask reads the split lease mask of the lease entry at lo with word
// loads (the engine may be writing it).
func leaseMask(b []byte, lo int) (m [layout.MaxMaskWords]uint64) {
	for j := range m {
		m[j] = ld64(b, lo+layout.LeaseMaskOff(j))
	}
	return m
}

// beyond reports whether mask m names a component that back does not.
func beyond(m, back [layout.MaxMaskWords]uint64) bool {
	for j := range m {
		if m[j]&^back[j] != 0 {
			return true
		}
	}
	return false
}
