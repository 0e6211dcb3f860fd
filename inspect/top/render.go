package top

import (
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/layout"
)

// RenderOptions shape a rendered View.
type RenderOptions struct {
	// Width and Height bound the text (0: unbounded). Lines are cut at
	// Width; module rows beyond Height are summed up in one line.
	Width, Height int
	// Refresh is the refresh interval, shown in the title (0: not shown).
	Refresh time.Duration
	// Color paints states and counters that grew (ANSI styles); without
	// it the text is plain.
	Color bool
	// Keys adds the key help to the title (the interactive view).
	Keys bool
}

// paints are the styles of a rendering: identity functions for plain text.
type paints struct {
	title, head, good, warn, bad, dim func(string) string
}

func plainPaint(s string) string { return s }

func newPaints(color bool) paints {
	if !color {
		return paints{plainPaint, plainPaint, plainPaint, plainPaint, plainPaint, plainPaint}
	}
	st := func(s lipgloss.Style) func(string) string { return func(x string) string { return s.Render(x) } }
	return paints{
		title: st(lipgloss.NewStyle().Bold(true)),
		head:  st(lipgloss.NewStyle().Bold(true).Underline(true)),
		good:  st(lipgloss.NewStyle().Foreground(lipgloss.Color("2"))),
		warn:  st(lipgloss.NewStyle().Foreground(lipgloss.Color("3")).Bold(true)),
		bad:   st(lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)),
		dim:   st(lipgloss.NewStyle().Faint(true)),
	}
}

// Columns of the module table: header, width, right-aligned. docs/ARCHITECTURE.md
// ("Inspection tools") says what each means.
var columns = []struct {
	head  string
	width int
	right bool
}{
	// NAME's width is a minimum: the longest name's is used (columnWidths).
	{"SLOT", 4, true}, {"NAME", 16, false}, {"STATE", 12, false}, {"PID", 8, true}, {"RUNS", 10, true},
	{"RUNS/S", 7, true}, {"LAG", 5, true}, {"TICK AVG", 9, true}, {"TICK P99", 9, true},
	{"FAILURES", 8, true}, {"LATE", 6, true}, {"REJECTED", 9, true},
}

// pad fits s to w columns (runes: every character the view prints is one
// column wide), cutting a longer s.
func pad(s string, w int, right bool) string {
	n := utf8.RuneCountInString(s)
	if n > w {
		r := []rune(s)
		return string(r[:w])
	}
	if right {
		return strings.Repeat(" ", w-n) + s
	}
	return s + strings.Repeat(" ", w-n)
}

// Render lays v out as text lines (no trailing newline).
func Render(v *View, o RenderOptions) string {
	p := newPaints(o.Color)
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }

	title := "FDP top  instance " + v.Instance
	if o.Refresh > 0 {
		title += "  refresh " + o.Refresh.String()
	}
	title += "  " + v.At.Format("15:04:05")
	if o.Keys {
		title += "  (q: quit)"
	}
	lines = append(lines, p.title(title))

	switch v.Engine {
	case EngineAbsent:
		lines = append(lines, p.bad("no engine: fdp."+v.Instance+".world does not exist; waiting for one"))
	case EngineStarting:
		lines = append(lines, p.warn("engine starting: its world segment is not ready yet"))
	case EngineUnreadable:
		lines = append(lines, p.bad("cannot read the world segment: "+v.Err))
	case EngineDead:
		lines = append(lines, p.bad(fmt.Sprintf("engine pid %d DEAD (last publish %s ago): the figures are its last; waiting for a new engine",
			v.PID, fmtAge(v.PublishAge))))
	case EngineLive:
		state := p.good("live")
		if v.Stalled {
			state = p.bad(fmt.Sprintf("STALLED (no publish for %s)", fmtAge(v.PublishAge)))
		}
		if v.Paused {
			state += p.warn(" PAUSED (engine ctl " + v.Instance + " resume)")
		}
		if v.Speed != 0 && v.Speed != 1 {
			state += fmt.Sprintf("  speed %g", v.Speed)
		}
		add("engine pid %d %s  up %s", v.PID, state, v.Uptime.Round(time.Second))
	}
	if v.Note != "" {
		lines = append(lines, p.warn(v.Note))
	}
	if v.Engine == EngineLive || v.Engine == EngineDead {
		lines = append(lines, engineLines(v, p)...)
		lines = append(lines, "", moduleSummary(v))
		room := 0 // unbounded
		if o.Height > 0 {
			room = max(o.Height-len(lines), 1)
		}
		lines = append(lines, moduleTable(v, p, room)...)
	}
	for i, l := range lines {
		if o.Width > 0 {
			lines[i] = ansi.Truncate(l, o.Width, "")
		}
	}
	return strings.Join(lines, "\n")
}

func engineLines(v *View, p paints) []string {
	frame := "frame -"
	if v.Published {
		frame = fmt.Sprintf("frame %d", v.Frame)
	}
	fps, skipped := "fps -", fmt.Sprintf("skipped %d", v.Skipped)
	if v.Interval > 0 {
		fps = fmt.Sprintf("fps %.1f", v.FPS)
		d := fmt.Sprintf(" (+%d)", v.SkipDelta)
		if v.SkipDelta > 0 {
			d = p.warn(d)
		}
		skipped += d
	}
	last := "never published"
	if v.PublishAge >= 0 {
		last = "last publish " + fmtAge(v.PublishAge) + " ago"
	}
	limit := "none"
	if v.ShmLimit > 0 {
		limit = fmtBytes(v.ShmLimit)
	}
	return []string{
		fmt.Sprintf("%s  %s  %s  %s  memory held %s (limit %s)", frame, fps, last, skipped, fmtBytes(v.ShmHeld), limit),
		fmt.Sprintf("publish time p50 %s p99 %s (last %s)   frame time p50 %s p99 %s (last %s)",
			pct(v.PubCount, v.PubP50), pct(v.PubCount, v.PubP99), fmtDur(v.LastPublishNano),
			pct(v.FrameCount, v.FrameP50), pct(v.FrameCount, v.FrameP99), fmtDur(v.FrameNano)),
	}
}

// moduleSummary counts the modules by state: "modules 3: 2 running, 1 dead".
func moduleSummary(v *View) string {
	var n [numRowStates]int
	for _, m := range v.Modules {
		n[m.State]++
	}
	var parts []string
	for s := RowRunning; s < numRowStates; s++ {
		if n[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[s], s))
		}
	}
	for _, s := range []RowState{RowNone, RowJoined} {
		if n[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[s], s))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("modules %d", len(v.Modules))
	}
	return fmt.Sprintf("modules %d: %s", len(v.Modules), strings.Join(parts, ", "))
}

// moduleTable renders the header and one row per module, in at most room
// lines (room <= 0: every row) with the last one saying how many did not fit.
func moduleTable(v *View, p paints, room int) []string {
	widths := columnWidths(v.Modules)
	cells := make([]string, len(columns))
	for i, c := range columns {
		cells[i] = pad(c.head, widths[i], c.right)
	}
	out := []string{p.head(strings.Join(cells, " "))}
	rows, cut := v.Modules, 0
	if room > 0 && len(rows) > room-1 {
		keep := max(room-2, 0)
		rows, cut = rows[:keep], len(rows)-keep
	}
	for i := range rows {
		out = append(out, moduleLine(&rows[i], v.Interval > 0, p, widths))
	}
	if cut > 0 {
		out = append(out, fmt.Sprintf("... %d more modules (a taller terminal shows them)", cut))
	}
	return out
}

// nameColumn is the index of NAME in columns.
const nameColumn = 1

// columnWidths are the columns' widths for rows: NAME is as wide as the
// longest name (names are never cut but by the terminal's width).
func columnWidths(rows []ModuleRow) []int {
	w := make([]int, len(columns))
	for i, c := range columns {
		w[i] = c.width
	}
	for i := range rows {
		w[nameColumn] = max(w[nameColumn], utf8.RuneCountInString(rows[i].Name))
	}
	return w
}

func moduleLine(m *ModuleRow, rates bool, p paints, widths []int) string {
	dash := "-"
	runsPerSec, tickAvg, tickP99 := dash, dash, dash
	if rates {
		runsPerSec = fmt.Sprintf("%.1f", m.RunsPerSec)
	}
	if m.Ticks > 0 {
		tickAvg, tickP99 = fmtDur(m.TickMean), fmtDur(m.TickP99)
	}
	vals := []string{
		fmt.Sprint(m.Slot), m.Name, m.State.String(), fmt.Sprint(m.PID), fmt.Sprint(m.Runs), runsPerSec,
		fmt.Sprint(m.Lag), tickAvg, tickP99, fmt.Sprint(m.Failures), fmt.Sprint(m.Late), fmt.Sprint(m.Rejected),
	}
	if m.State == RowNone {
		for i := 4; i < len(vals); i++ {
			vals[i] = dash
		}
	}
	cells := make([]string, len(columns))
	for i, c := range columns {
		cells[i] = pad(vals[i], widths[i], c.right)
	}
	switch m.State {
	case RowRunning:
		cells[2] = p.good(cells[2])
	case RowJoined, RowNone:
		cells[2] = p.warn(cells[2])
	default:
		cells[2] = p.bad(cells[2])
	}
	// Counters that grew during the interval stand out.
	for i, d := range [...]uint64{9: m.FailDelta, 10: m.LateDelta, 11: m.RejectDelta} {
		if d > 0 {
			cells[i] = p.bad(cells[i])
		}
	}
	line := strings.Join(cells, " ")
	if m.Err != "" {
		line += "  " + p.bad("statistics block: "+m.Err)
	}
	return line
}

// pct renders a percentile of n counted durations: "-" for none, "≥17.2s"
// for the histogram's last bucket.
func pct(n, ns uint64) string {
	switch {
	case n == 0:
		return "-"
	case ns >= 1<<layout.DurHistHighBits:
		return "≥" + fmtDur(ns)
	}
	return fmtDur(ns)
}

// fmtDur renders ns nanoseconds rounded to three significant digits
// (logs.Round3, as every duration FDP shows), trailing zeros kept so that
// the columns line up (212µs, 1.21ms, 33.6ms, 1.50s).
func fmtDur(ns uint64) string {
	r := logs.Round3(time.Duration(min(ns, math.MaxInt64)))
	if r < 1000 {
		return fmt.Sprintf("%dns", r)
	}
	units := []struct {
		div  float64
		name string
	}{{1e3, "µs"}, {1e6, "ms"}, {1e9, "s"}}
	for i, u := range units {
		if float64(r) < 1000*u.div || i == len(units)-1 {
			return sig3(float64(r)/u.div) + u.name
		}
	}
	return "" // unreachable: the last unit always returns
}

// sig3 formats x (>= 1) with three significant digits.
func sig3(x float64) string {
	switch {
	case x < 9.995:
		return fmt.Sprintf("%.2f", x)
	case x < 99.95:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.0f", x)
}

// fmtBytes renders a byte count in binary units with three significant
// digits (512 B, 21.3 MiB).
func fmtBytes(b uint64) string {
	if b < 1024 {
		return fmt.Sprintf("%d B", b)
	}
	x := float64(b)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		x /= 1024
		if x < 999.5 || u == "TiB" {
			return sig3(x) + " " + u
		}
	}
	return "" // unreachable: TiB always returns
}

// fmtAge renders an age: three significant digits, "-" for a negative one.
func fmtAge(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmtDur(uint64(d))
}
