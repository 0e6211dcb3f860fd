package top

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"golang.org/x/sys/unix"
)

// Options of Run.
type Options struct {
	Instance string
	// Interval between two reads of the segments (the rates are over it).
	Interval time.Duration
	// Once prints one plain-text frame (rates over one Interval) and
	// returns, as Run does when In or Out is not a terminal.
	Once bool
	In   *os.File // the keyboard of the interactive view (os.Stdin)
	Out  io.Writer
}

// Run shows the live view of o.Instance until q, Ctrl-C or SIGTERM (or ctx
// ends): interactive when In and Out are terminals, else (or with Once) one
// plain-text frame.
func Run(ctx context.Context, o Options) error {
	if o.Interval <= 0 {
		return errors.New("top: --interval must be positive")
	}
	src := NewSource(o.Instance)
	defer src.Close()
	out, tty := o.Out.(*os.File)
	if o.Once || o.In == nil || !tty || !IsTerminal(o.In) || !IsTerminal(out) {
		return Once(ctx, src, o.Interval, o.Out)
	}
	return Interactive(ctx, src, o.Interval, o.In, out)
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// minOnceWindow is the shortest interval Once computes its rates over: a
// shorter one holds no publish of a 60 fps engine and would show 0 fps.
const minOnceWindow = 250 * time.Millisecond

// Once reads the segments twice, interval (at least minOnceWindow) apart,
// and writes the plain-text view of the second read with the rates over
// that time. An instance without a world segment, or with one it cannot
// read, is an error (one line, after nothing is written), like stat's.
func Once(ctx context.Context, src *Source, interval time.Duration, w io.Writer) error {
	var tr Tracker
	first := src.Sample(time.Now())
	switch first.Engine {
	case EngineAbsent:
		return fmt.Errorf("top: no engine: fdp.%s.world does not exist", src.Instance())
	case EngineUnreadable:
		return fmt.Errorf("top: fdp.%s.world: %s", src.Instance(), first.Err)
	}
	tr.Next(first)
	t := time.NewTimer(max(interval, minOnceWindow))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-t.C:
	}
	v := tr.Next(src.Sample(time.Now()))
	_, err := fmt.Fprintln(w, Render(&v, RenderOptions{Refresh: interval}))
	return err
}

// Interactive runs the full-screen view on a terminal (alternate screen,
// raw input) until q, Ctrl-C or SIGTERM, and restores the terminal.
func Interactive(ctx context.Context, src *Source, interval time.Duration, in, out *os.File) error {
	m := &tuiModel{src: src, interval: interval}
	p := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithInput(in), tea.WithOutput(out))
	_, err := p.Run()
	switch {
	case err == nil, errors.Is(err, tea.ErrInterrupted):
		return nil
	case errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil:
		return nil
	}
	return err
}

// tuiModel is the Bubble Tea model: the latest view and the terminal size.
// Reads run as commands off the event loop, one at a time: the next is
// scheduled when the last one's snapshot arrived, so the Source is never
// used by two goroutines at once.
type tuiModel struct {
	src           *Source
	interval      time.Duration
	tracker       Tracker
	view          *View
	width, height int
}

type (
	sampleMsg struct{ snap *Snapshot }
	tickMsg   struct{}
)

func (m *tuiModel) sample() tea.Msg { return sampleMsg{m.src.Sample(time.Now())} }

func (m *tuiModel) Init() tea.Cmd { return m.sample }

func (m *tuiModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "Q", "ctrl+c", "esc":
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case sampleMsg:
		v := m.tracker.Next(msg.snap)
		m.view = &v
		return m, tea.Tick(m.interval, func(time.Time) tea.Msg { return tickMsg{} })
	case tickMsg:
		return m, m.sample
	}
	return m, nil
}

func (m *tuiModel) View() string {
	if m.view == nil {
		return "reading the segments of " + m.src.Instance() + " ..."
	}
	return Render(m.view, RenderOptions{Width: m.width, Height: m.height, Refresh: m.interval, Color: true, Keys: true})
}
