package top

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestTUIModel: the model reads at once, shows the view, schedules the next
// read after a snapshot arrived, and quits on q, Q, Esc and Ctrl-C only.
func TestTUIModel(t *testing.T) {
	testutil.UseShmDir(t, t.TempDir())
	m := &tuiModel{src: NewSource("demo"), interval: time.Second}
	require.Equal(t, "reading the segments of demo ...", m.View())
	msg := m.Init()()
	require.IsType(t, sampleMsg{}, msg)
	_, cmd := m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	require.Nil(t, cmd)
	_, cmd = m.Update(msg)
	require.NotNil(t, cmd, "the next read is scheduled")
	require.Contains(t, m.View(), "no engine: fdp.demo.world does not exist")
	_, cmd = m.Update(tickMsg{})
	require.IsType(t, sampleMsg{}, cmd())
	for _, k := range []tea.KeyMsg{
		{Type: tea.KeyRunes, Runes: []rune("q")}, {Type: tea.KeyRunes, Runes: []rune("Q")},
		{Type: tea.KeyEsc}, {Type: tea.KeyCtrlC},
	} {
		_, cmd = m.Update(k)
		require.NotNil(t, cmd, "%v", k)
		require.Equal(t, tea.QuitMsg{}, cmd(), "%v", k)
	}
	_, cmd = m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("x")})
	require.Nil(t, cmd)
}

// lockedBuf collects a program's output from its pipe.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestInteractiveQuits: the program on pipes enters the alternate screen,
// draws the view of a world segment, and on "q" returns nil after leaving
// the alternate screen and showing the cursor again. (tests/top_test.go
// checks the same on a real terminal.)
func TestInteractiveQuits(t *testing.T) {
	testutil.UseShmDir(t, t.TempDir())
	c := fixture.Default
	putSeg(t, "fdp.demo.world", fixture.World(c))
	src := NewSource("demo")
	defer src.Close()
	inR, inW, err := os.Pipe()
	require.NoError(t, err)
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	var out lockedBuf
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := outR.Read(buf)
			out.mu.Lock()
			out.b.Write(buf[:n])
			out.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- Interactive(context.Background(), src, 20*time.Millisecond, inR, outW) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "frame 10") {
		require.True(t, time.Now().Before(deadline), "no view drawn: %q", out.String())
		time.Sleep(5 * time.Millisecond) // polling the program's output, bounded
	}
	_, err = io.WriteString(inW, "q")
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the program did not quit on q")
	}
	require.NoError(t, outW.Close())
	<-copied
	inW.Close()
	inR.Close()
	s := out.String()
	enter, leave := strings.Index(s, "\x1b[?1049h"), strings.LastIndex(s, "\x1b[?1049l")
	require.GreaterOrEqual(t, enter, 0, "entered the alternate screen")
	require.Greater(t, leave, enter, "left the alternate screen")
	require.Greater(t, strings.LastIndex(s, "\x1b[?25h"), enter, "showed the cursor again")
}
