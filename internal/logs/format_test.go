package logs

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestParseFormat: the two names, and a one-line error naming both for
// anything else.
func TestParseFormat(t *testing.T) {
	for _, f := range []Format{Text, JSON} {
		got, err := ParseFormat(f.String())
		require.NoError(t, err)
		require.Equal(t, f, got)
	}
	for _, bad := range []string{"", "JSON", "xml", "text\n"} {
		_, err := ParseFormat(bad)
		require.Error(t, err, "%q", bad)
		require.NotContains(t, err.Error(), "\n")
		require.Contains(t, err.Error(), `"text" or "json"`)
	}
}

// TestHandlerRoundsDurations: in both formats every duration attribute,
// top-level, added by With, or in a group, is the Round3 string; JSON
// writes one object per line and the duration parses back.
func TestHandlerRoundsDurations(t *testing.T) {
	d := 524288 * time.Nanosecond
	var buf bytes.Buffer
	log := New(&buf, JSON).With("uptime", 1234567*time.Microsecond)
	log.Info("x", "p50", d, slog.Group("tick", slog.Duration("p99", 8388608*time.Nanosecond)), "n", 3)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	require.Equal(t, "524µs", rec["p50"])
	require.Equal(t, "1.23s", rec["uptime"])
	require.Equal(t, map[string]any{"p99": "8.39ms"}, rec["tick"])
	require.Equal(t, 3.0, rec["n"])
	back, err := time.ParseDuration(rec["p50"].(string))
	require.NoError(t, err)
	require.Equal(t, Round3(d), back)

	buf.Reset()
	New(&buf, Text).Info("x", "p50", d, slog.Group("tick", slog.Duration("p99", 8388608*time.Nanosecond)))
	require.Contains(t, buf.String(), " p50=524µs tick.p99=8.39ms\n")
}

// TestLines: each line written, in whatever pieces, is one record with the
// line as its message; blank lines are dropped; Flush logs a last line
// without a newline.
func TestLines(t *testing.T) {
	var buf bytes.Buffer
	l := NewLines(New(&buf, JSON), slog.LevelInfo)
	for _, p := range []string{"\n== summary ==\nengine fr", "ames 600\n", "\n   \n", "module a\r\nlast"} {
		n, err := l.Write([]byte(p))
		require.NoError(t, err)
		require.Equal(t, len(p), n)
	}
	l.Flush()
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec struct{ Level, Msg string }
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		require.Equal(t, "INFO", rec.Level)
		msgs = append(msgs, rec.Msg)
	}
	require.Equal(t, []string{"== summary ==", "engine frames 600", "module a", "last"}, msgs)
}
