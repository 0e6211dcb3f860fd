package inspect

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
)

// Text renders r for humans as aligned tables.
func Text(w io.Writer, r *Report) error {
	p := &printer{w: w}
	h := r.Header
	if r.Source != "" {
		p.f("segment    %s\n", r.Source)
	}
	p.f("kind       %s (%d)   version %d   instance %s   size %d   ready %v\n", h.Kind, h.KindID, h.Version, h.Instance, h.TotalSize, h.Ready)
	p.f("creator    pid %d   start %d   alive %v   created %s\n", h.CreatorPID, h.CreatorStart, h.CreatorAlive, h.Created)
	p.f("schema     %s   magic ok %v\n", h.SchemaHash, h.MagicOK)
	p.f("\nsections\n")
	t := p.table("ID\tNAME\tCOUNT\tOFFSET\tSIZE")
	for _, s := range h.Sections {
		t.row(s.ID, s.Name, s.Count, s.Offset, s.Size)
	}
	t.flush()
	switch {
	case r.World != nil:
		p.world(r.World)
	case r.Leases != nil:
		p.leases(r.Leases)
	case r.Events != nil:
		p.events(r.Events)
	case r.Module != nil:
		p.module(r.Module)
	}
	for _, n := range r.Notes {
		p.f("\nnote: %s\n", n)
	}
	for _, n := range r.Problems {
		p.f("\nPROBLEM: %s\n", n)
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}

type table struct {
	p  *printer
	tw *tabwriter.Writer
}

func (p *printer) table(head string) *table {
	t := &table{p: p, tw: tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)}
	t.line(head)
	return t
}

func (t *table) line(s string) {
	if t.p.err == nil {
		_, t.p.err = io.WriteString(t.tw, s+"\n")
	}
}

func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	t.line(strings.Join(s, "\t"))
}

func (t *table) flush() {
	if err := t.tw.Flush(); err != nil && t.p.err == nil {
		t.p.err = err
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

func (p *printer) world(w *WorldReport) {
	p.f("\nworld      slots %d   components %d   chunk capacity %d   max chunks %d   chunk stride %d   slot stride %d\n",
		w.SlotCount, w.ComponentCount, w.ChunkCapacity, w.MaxChunks, w.ChunkStride, w.SlotStride)
	if w.Latest.Published {
		p.f("latest     frame %d in slot %d\n", w.Latest.Frame, w.Latest.Slot)
	} else {
		p.f("latest     nothing published\n")
	}
	s := w.Stats
	p.f("stats      publishes %d   skipped %d   aborted %d   snapshots refused %d   bytes %d   chunks %d   last publish %s   frame %s   heartbeat %s\n",
		s.Publishes, s.Skipped, s.Aborted, s.SnapshotsRefused, s.BytesCopied, s.ChunksCopied, dur(s.LastPublishNano), dur(s.FrameNano), FormatUnixNano(int64(s.HeartbeatNano)))
	p.f("time       %s\n", timeText(s.Time))
	p.f("memory     held %d (%s)   limit %s   fixed %d   slots %d   trimmed %d   snapshots refused for memory %d   publishes skipped for memory %d\n",
		s.ShmHeld, humanBytes(float64(s.ShmHeld)), limitText(s.ShmLimit), w.FixedBytes, w.SlotsBackedBytes, s.Trimmed, s.SnapshotsNoSpace, s.SkippedNoSpace)
	p.f("\ncomponents\n")
	t := p.table("ID\tNAME\tSIZE\tALIGN\tFINGERPRINT\tCOLUMN\tKIND\tMAX_LEN\tARENA/CHUNK\tLATEST_VALUES\tLATEST_BYTES\tLATEST_ARENAS")
	for _, c := range w.Components {
		if c.Kind == "fixed" || c.Kind == "" {
			t.row(c.ID, c.Name, c.Size, c.Align, c.Fingerprint, c.ColumnOffset, "fixed", "-", "-", "-", "-", "-")
			continue
		}
		vals, byts, capy := "-", "-", "-"
		if c.Arena != nil {
			vals, byts, capy = fmt.Sprint(c.Arena.Values), fmt.Sprint(c.Arena.Bytes), fmt.Sprint(c.Arena.Capacity)
		}
		t.row(c.ID, c.Name, c.Size, c.Align, c.Fingerprint, c.ColumnOffset, c.Kind, c.MaxLen, c.ArenaPerChunk, vals, byts, capy)
	}
	t.flush()
	if len(w.Singletons) > 0 {
		p.f("\nsingletons (values of the latest frame)\n")
		t = p.table("ID\tNAME\tSIZE\tALIGN\tFINGERPRINT\tOFFSET\tOWNER\tVERSION\tVALUE")
		for _, s := range w.Singletons {
			owner := "any"
			if s.EngineOwned {
				owner = "engine"
			}
			t.row(s.ID, s.Name, s.Size, s.Align, s.Fingerprint, s.ValueOffset, owner, s.Version, orDash(s.Value))
		}
		t.flush()
	}
	p.fieldTable(w)
	p.f("\nslots\n")
	t = p.table("SLOT\tSEQ\tWRITING\tSTABLE\tLATEST\tFRAME\tVERSION\tMASK\tCHUNKS\tENTITIES\tALIVE\tBYTES\tCOPIED\tPUBLISHED\tBACK_MASK\tBACK_CHUNKS\tBACKED\tERROR")
	for _, sl := range w.Slots {
		t.row(sl.Index, sl.Seq, yes(sl.Writing), yes(sl.Stable), yes(sl.Latest), sl.Frame, sl.Version, sl.Mask, sl.Chunks,
			sl.Entities, sl.Alive, sl.BytesCopied, sl.ChunksCopied, FormatUnixNano(int64(sl.PublishNano)),
			sl.BackMask, sl.BackChunks, sl.BackedBytes, orDash(sl.Error))
	}
	t.flush()
	for _, sl := range w.Slots {
		if len(sl.ChunkDetail) == 0 {
			continue
		}
		p.f("\nslot %d chunks\n", sl.Index)
		head := "CHUNK\tROWS\tALIVE\tSTRUCT"
		for _, c := range w.Components {
			head += "\tV:" + c.Name
		}
		t = p.table(head)
		for _, c := range sl.ChunkDetail {
			cells := []any{c.Index, c.Rows, c.Alive, c.StructuralVersion}
			for _, v := range c.Versions {
				cells = append(cells, v)
			}
			t.row(cells...)
		}
		t.flush()
	}
}

// limitText renders a shared-memory limit in bytes, "none" for 0.
func limitText(v uint64) string {
	if v == 0 {
		return "none"
	}
	return fmt.Sprintf("%d (%s)", v, humanBytes(float64(v)))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (p *printer) leases(l *LeasesReport) {
	p.f("\nleases     reader entries %d   slot entries %d   readers in use %d\n", l.ReaderEntries, l.SlotEntries, len(l.Readers))
	p.f("\nexternal readers (tools of the engine's uid; modules pin in their own segments)\n")
	t := p.table("ENTRY\tPID\tSTART\tALIVE\tNAME\tPIN\tPINS\tRETRIES\tHEARTBEAT")
	for _, r := range l.Readers {
		pin := "-"
		if r.Pinned {
			pin = fmt.Sprintf("slot %d seq %d", r.PinSlot, r.PinSeq)
		}
		alive := "dead"
		if r.Alive {
			alive = "alive"
		}
		t.row(r.Index, r.PID, r.StartTime, alive, orDash(r.Name), pin, r.Pins, r.Retries, FormatUnixNano(int64(r.HeartbeatNano)))
	}
	t.flush()
	p.f("\nslot leases (the engine's copy; holders are module slots)\n")
	t = p.table("SLOT\tHOLDERS\tFRAME\tMASK\tENGINE_REFS")
	for _, s := range l.SlotLeases {
		hs := make([]string, len(s.Holders))
		for i, h := range s.Holders {
			hs[i] = strconv.Itoa(h)
		}
		t.row(s.Slot, orDash(strings.Join(hs, ",")), s.Frame, s.Mask, s.EngineRefs)
	}
	t.flush()
}

func (p *printer) events(e *EventsReport) {
	p.f("\nevents     capacity %d   max payload %d   area offset %d\n", e.Capacity, e.MaxPayload, e.AreaOffset)
	p.f("\n")
	t := p.table("POSITION\tGEN\tSEQ\tPOS")
	t.row("commit (next)", e.CommitGen, e.NextSeq, e.EndPos)
	t.row("oldest", e.OldestGen, e.OldestSeq, e.OldestPos)
	t.flush()
	p.f("retained   %d events, %d bytes\n", e.Retained, e.RetainedBytes)
	s := e.Stats
	p.f("stats      events %d   payload bytes %d   commits %d   rejected %d   last frame %d   last commit %s\n",
		s.Events, s.PayloadBytes, s.Commits, s.Rejected, s.LastFrame, FormatUnixNano(int64(s.LastCommitNano)))
}

func (p *printer) module(m *ModuleReport) {
	p.f("\nmodule     slot %d   name %s   tier %s   every %d   group %s   mask %s\n", m.Slot, m.Name, m.TierName, m.Frequency, groupText(m.Group), m.Mask)
	p.f("process    pid %d   start %d   alive %v   heartbeat %s\n", m.PID, m.StartTime, m.Alive, FormatUnixNano(int64(m.HeartbeatNano)))
	p.f("\n")
	t := p.table("DOORBELL\tWORD\tNEED_WAKE\tFRAME\tLEASE")
	t.row("tick", m.Tick.Word, m.Tick.NeedWake, m.Tick.Frame, m.Tick.Lease)
	t.row("done", m.Done.Word, m.Done.NeedWake, m.Done.Frame, "-")
	t.flush()
	w := m.Wake
	p.f("tick wake  last %s   warm %d   cold %d   stamp %d\n", dur(w.LastNano), w.Warm, w.Cold, w.StampNano)
	pin := "-"
	if rd := m.Reader; rd.Pinned {
		pin = fmt.Sprintf("slot %d seq %d", rd.PinSlot, rd.PinSeq)
	}
	p.f("reader     pin %s   pins %d   retries %d   last pin %s\n", pin, m.Reader.Pins, m.Reader.Retries, FormatUnixNano(int64(m.Reader.LastNano)))
	g := m.Ring
	p.f("\nring       offset %d   capacity %d   head %d   tail %d   committed %d   free %d\n", g.Offset, g.Capacity, g.Head, g.Tail, g.CommittedBytes, g.FreeBytes)
	p.f("producer   records %d   batches %d   full %d\n", g.ProdRecords, g.ProdBatches, g.ProdFull)
	p.f("consumer   records %d   bad %d   resets %d\n", g.ConsRecords, g.ConsBad, g.ConsResets)
	if m.Stats != nil {
		p.moduleStats(m.Stats)
	}
}

// moduleStats renders the engine's statistics block of a module segment.
func (p *printer) moduleStats(s *ModuleStatsReport) {
	stable := ""
	if !s.Stable {
		stable = "   (changing while read)"
	}
	p.f("\nstats      written at frame %d   state %s   joins %d   deaths %d%s\n", s.Frame, s.State, s.Joins, s.Deaths, stable)
	p.f("ticks      runs %d   late %d   failures %d   skipped %d   overruns %d   revoked %d   last tick frame %d\n",
		s.Runs, s.Late, s.Failures, s.Skipped, s.Overruns, s.Revoked, s.LastTickFrame)
	p.f("breaker    trips %d   fail streak %d   open until %s\n", s.BreakerTrips, s.FailStreak, s.BreakerOpenUntil)
	p.f("duration   %d ticks   p50 %s   p99 %s   max %s   mean %s   last %s\n", s.Ticks, dur(s.TickP50Nano),
		dur(s.TickP99Nano), dur(s.TickMaxNano), dur(s.TickMeanNano), dur(s.TickLastNano))
	p.f("lag        %d frames   max %d\n", s.LagFrames, s.LagMaxFrames)
	p.f("snapshots  %d   catch-ups %d\n", s.Snapshots, s.CatchUps)
	p.f("events     delivered %d   lost %d\n", s.EventsDelivered, s.EventsLost)
	p.f("commands   applied %d   rejected %d%s\n", s.Applied, s.Rejected, rejectList(s.RejectedByReason))
}

// rejectList renders rejects by reason as " (reason n, ...)", or "".
func rejectList(rs []RejectCount) string {
	if len(rs) == 0 {
		return ""
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s %d", r.Reason, r.Count)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// groupText renders a module's convoy group: "auto" for none.
func groupText(g string) string {
	if g == "" {
		return "auto"
	}
	return g
}

// dur shows a duration in nanoseconds for people: rounded to three
// significant digits (logs.Round3) in a fitting unit. The statistics
// blocks' percentiles are power-of-two bucket bounds: their other digits
// say nothing.
func dur[T int64 | uint64](ns T) string { return logs.Round3(time.Duration(ns)).String() }

// fieldTable prints the field table: every component's and singleton's
// fields (docs/LAYOUT.md "Field table").
func (p *printer) fieldTable(w *WorldReport) {
	p.f("\nfields (offsets inside a value; \"\" is the value itself)\n")
	t := p.table("OWNER\tID\tNAME\tFIELD\tTYPE\tOFFSET\tCOUNT")
	for _, c := range w.Components {
		for _, f := range c.Fields {
			t.row("component", c.ID, c.Name, fieldName(f.Name), f.Type, f.Offset, f.Count)
		}
	}
	for _, s := range w.Singletons {
		for _, f := range s.Fields {
			t.row("singleton", s.ID, s.Name, fieldName(f.Name), f.Type, f.Offset, f.Count)
		}
	}
	t.flush()
}

func fieldName(n string) string {
	if n == "" {
		return `""`
	}
	return n
}

// SchemaText writes the schema of a world segment's report: every
// component and singleton with its size, alignment, fingerprint and fields
// (`engine dump --schema`; the demo's is in docs/PROTOCOL.md). Offsets are
// inside a value; "" names the value itself.
func SchemaText(w io.Writer, r *Report) error {
	if r.World == nil {
		return fmt.Errorf("not a world segment (kind %s): only a world segment has a schema", r.Header.Kind)
	}
	p := &printer{w: w}
	p.f("schema hash %s\n", r.Header.SchemaHash)
	owner := func(kind string, id int, name string, size, align uint32, fp, extra string, fields []FieldReport) {
		p.f("%s %d %q: %d bytes, align %d, fingerprint %s%s\n", kind, id, name, size, align, fp, extra)
		t := p.table("  FIELD\tTYPE\tOFFSET\tCOUNT")
		for _, f := range fields {
			t.row("  "+fieldName(f.Name), f.Type, f.Offset, f.Count)
		}
		t.flush()
	}
	for _, c := range r.World.Components {
		extra := ""
		if c.Kind != "fixed" && c.Kind != "" {
			extra = fmt.Sprintf(", variable-size %s of at most %d bytes", c.Kind, c.MaxLen)
		}
		owner("component", c.ID, c.Name, c.Size, c.Align, c.Fingerprint, extra, c.Fields)
	}
	for _, s := range r.World.Singletons {
		extra := ""
		if s.EngineOwned {
			extra = ", engine-owned"
		}
		owner("singleton", s.ID, s.Name, s.Size, s.Align, s.Fingerprint, extra, s.Fields)
	}
	return p.err
}
