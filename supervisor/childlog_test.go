package supervisor

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestParseChildLine: a line written by slog's text handler parses back to
// its level, message and attributes, whatever its quoting; anything else
// does not parse (and is logged as it is).
func TestParseChildLine(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l.Warn(`module died; restarting "it"`, "module", "ai-1", "err", "exit status 1", "n", 3, "empty", "", "eq", "a=b c")
	line := strings.TrimRight(buf.String(), "\n")
	r, ok := parseChildLine(line)
	require.True(t, ok, line)
	require.Equal(t, slog.LevelWarn, r.level)
	require.Equal(t, `module died; restarting "it"`, r.msg)
	require.Equal(t, []any{"module", "ai-1", "err", "exit status 1", "n", "3", "empty", "", "eq", "a=b c"}, r.attrs)

	for _, bad := range []string{
		"status: frame 61  60.9 fps",                      // the engine's status line
		"level=INFO msg=x",                                // no time
		`time=2026-01-01T00:00:00Z level=LOUD msg=x`,      // no such level
		`time=2026-01-01T00:00:00Z level=INFO msg="open`,  // unterminated quote
		`time=2026-01-01T00:00:00Z level=INFO`,            // no msg
		`time=2026-01-01T00:00:00Z level=INFO msg="a"b=1`, // no space after a quoted value
		"",
	} {
		_, ok := parseChildLine(bad)
		require.False(t, ok, "%q", bad)
	}
}

// TestChildLineReemitted: the supervisor's log of a child's output (pump,
// through a real pipe) has one record per line: a slog line at the child's
// level with the child's message and attributes, not the child's whole line
// quoted inside the supervisor's msg; a plain line as it is.
func TestChildLineReemitted(t *testing.T) {
	var child, sup bytes.Buffer
	slog.New(slog.NewTextHandler(&child, nil)).Error("breaker open", "module", "ai-2")
	child.WriteString("status: frame 61  60.9 fps\n")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	s := &Supervisor{log: slog.New(slog.NewTextHandler(&sup, nil)), pipes: map[*os.File]struct{}{r: {}}}
	out := newProcOut()
	s.outWG.Add(1)
	go s.pump(r, "engine", "stderr", out)
	_, err = w.Write(child.Bytes())
	require.NoError(t, err)
	require.NoError(t, w.Close())
	s.outWG.Wait()
	lines := strings.Split(strings.TrimSpace(sup.String()), "\n")
	require.Len(t, lines, 2, sup.String())
	require.Contains(t, lines[0], `level=ERROR msg="breaker open" child=engine stream=stderr module=ai-2`)
	require.NotContains(t, lines[0], `msg="time=`)
	require.Contains(t, lines[1], `level=INFO msg="status: frame 61  60.9 fps" child=engine stream=stderr`)
}
