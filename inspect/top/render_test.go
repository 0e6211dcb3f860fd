package top

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"
	"github.com/stretchr/testify/require"
)

func TestFormats(t *testing.T) {
	for ns, want := range map[uint64]string{
		0: "0ns", 999: "999ns", 1000: "1.00µs", 1234: "1.23µs", 99_949: "99.9µs", 99_950: "100µs",
		999_499: "999µs", 999_500: "1.00ms", 12_345_678: "12.3ms", 1_500_000_000: "1.50s", 1 << 34: "17.2s",
		3600e9: "3600s", 1_005_000: "1.01ms", // a half rounds away from zero, as logs.Round3 does everywhere
		1<<64 - 1: "9220000000s",
	} {
		require.Equal(t, want, fmtDur(ns), "%d ns", ns)
	}
	for b, want := range map[uint64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 123 << 20: "123 MiB", 1023 << 20: "1.00 GiB", 5 << 40: "5.00 TiB",
	} {
		require.Equal(t, want, fmtBytes(b), "%d bytes", b)
	}
	require.Equal(t, "-", pct(0, 0))
	require.Equal(t, "1.02µs", pct(3, 1024))
	require.Equal(t, "≥17.2s", pct(3, 1<<34))
	require.Equal(t, "-", fmtAge(-1))
}

func testView() *View {
	return &View{
		Instance: "demo", At: time.Date(2030, 1, 2, 3, 4, 5, 0, time.Local), Engine: EngineLive, PID: 4321,
		Uptime: 62 * time.Second, Interval: time.Second, Published: true, Frame: 12345, FPS: 59.96,
		PublishAge: 4 * time.Millisecond, Skipped: 3, SkipDelta: 1, ShmHeld: 21 << 20,
		PubCount: 60, PubP50: 212_000, PubP99: 480_000, FrameCount: 60, FrameP50: 1_210_000, FrameP99: 3_400_000,
		LastPublishNano: 200_000, FrameNano: 1_100_000,
		Modules: []ModuleRow{
			{Slot: 0, Name: "telemetry", PID: 100, State: RowRunning, Runs: 123456, RunsPerSec: 60, Lag: 0,
				Ticks: 60, TickMean: 12_300, TickP99: 32_768},
			{Slot: 1, Name: "ai-1", PID: 101, State: RowDead, Runs: 77, Lag: 2, Failures: 3, FailDelta: 1, Late: 0, Rejected: 21, RejectDelta: 4},
			{Slot: 4, Name: "new", PID: 102, State: RowNone},
		},
	}
}

// TestRenderPlain: every figure of a view is where the docs say, each
// module row has one whitespace-separated field per column, and a colored
// rendering is the same text with styles.
func TestRenderPlain(t *testing.T) {
	v := testView()
	out := Render(v, RenderOptions{Refresh: time.Second})
	require.NotContains(t, out, "\x1b")
	lines := strings.Split(out, "\n")
	require.Equal(t, "FDP top  instance demo  refresh 1s  03:04:05", lines[0])
	require.Equal(t, "engine pid 4321 live  up 1m2s", lines[1])
	require.Equal(t, "frame 12345  fps 60.0  last publish 4.00ms ago  skipped 3 (+1)  memory held 21.0 MiB (limit none)", lines[2])
	require.Equal(t, "publish time p50 212µs p99 480µs (last 200µs)   frame time p50 1.21ms p99 3.40ms (last 1.10ms)", lines[3])
	require.Equal(t, "modules 3: 1 running, 1 dead, 1 none", lines[5])
	head := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(lines[6], "TICK AVG", "TICK-AVG"), "TICK P99", "TICK-P99"))
	require.Equal(t, []string{"SLOT", "NAME", "STATE", "PID", "RUNS", "RUNS/S", "LAG", "TICK-AVG", "TICK-P99", "FAILURES", "LATE", "REJECTED"}, head)
	require.Equal(t, []string{"0", "telemetry", "running", "100", "123456", "60.0", "0", "12.3µs", "32.8µs", "0", "0", "0"}, strings.Fields(lines[7]))
	require.Equal(t, []string{"1", "ai-1", "dead", "101", "77", "0.0", "2", "-", "-", "3", "0", "21"}, strings.Fields(lines[8]))
	require.Equal(t, []string{"4", "new", "none", "102", "-", "-", "-", "-", "-", "-", "-", "-"}, strings.Fields(lines[9]))
	require.Len(t, lines, 10)
	// Columns line up: every row is as wide as the header.
	for _, l := range lines[7:] {
		require.Equal(t, utf8.RuneCountInString(lines[6]), utf8.RuneCountInString(l), "%q", l)
	}

	// In colour (the profile a terminal of 16 colours gets): the same
	// text; states painted; a counter that grew in the interval in red,
	// one that did not plain.
	old := lipgloss.ColorProfile()
	lipgloss.SetColorProfile(termenv.ANSI)
	t.Cleanup(func() { lipgloss.SetColorProfile(old) })
	colored := Render(v, RenderOptions{Refresh: time.Second, Color: true})
	require.Equal(t, out, ansi.Strip(colored))
	cl := strings.Split(colored, "\n")
	red := func(s string) string { return lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true).Render(s) }
	green := lipgloss.NewStyle().Foreground(lipgloss.Color("2")).Render("running     ")
	require.Contains(t, cl[7], green)
	require.Contains(t, cl[8], red("dead        "))
	require.Contains(t, cl[8], red("       3"), "failures grew by 1")
	require.Contains(t, cl[8], " 0 ", "late did not grow: plain")
	require.Contains(t, cl[8], red("       21"), "rejects grew by 4")
	require.NotEqual(t, red("x"), "x", "the profile paints")
}

// TestRenderBounds: lines are cut at the width, rows that do not fit the
// height are counted in one line, and an engine that is not live says so.
func TestRenderBounds(t *testing.T) {
	v := testView()
	out := Render(v, RenderOptions{Width: 50, Height: 9, Keys: true, Color: true})
	lines := strings.Split(out, "\n")
	require.Len(t, lines, 9)
	for _, l := range lines {
		require.LessOrEqual(t, ansi.StringWidth(l), 50, "%q", l)
	}
	require.Contains(t, ansi.Strip(lines[0]), "(q: quit)")
	require.Equal(t, "... 2 more modules (a taller terminal shows them)", ansi.Strip(lines[8]))

	v.Engine, v.PublishAge = EngineDead, 1500*time.Millisecond
	v.Note = "engine pid 4321 died at about 03:04:05"
	out = Render(v, RenderOptions{})
	require.Contains(t, out, "engine pid 4321 DEAD (last publish 1.50s ago): the figures are its last; waiting for a new engine")
	require.Contains(t, out, "\nengine pid 4321 died at about 03:04:05\n")
	require.Contains(t, out, "frame 12345")

	v.Engine = EngineLive
	v.Stalled, v.PublishAge = true, 3*time.Second
	require.Contains(t, Render(v, RenderOptions{}), "engine pid 4321 STALLED (no publish for 3.00s)")

	for st, want := range map[EngineState]string{
		EngineAbsent:     "no engine: fdp.demo.world does not exist; waiting for one",
		EngineStarting:   "engine starting: its world segment is not ready yet",
		EngineUnreadable: "cannot read the world segment: bad magic",
	} {
		out := Render(&View{Instance: "demo", Engine: st, Err: "bad magic"}, RenderOptions{})
		require.Equal(t, want, strings.Split(out, "\n")[1])
		require.NotContains(t, out, "SLOT", "no table without a world")
	}
}
