package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestResolveLogFormat: the flag over $FDP_LOG_FORMAT over the config's
// log_format over text; an invalid value is one line naming where it came
// from and the valid values.
func TestResolveLogFormat(t *testing.T) {
	for _, c := range []struct {
		flag, env, cfg string
		want           logs.Format
	}{
		{"", "", "", logs.Text},
		{"", "", "json", logs.JSON},
		{"", "json", "text", logs.JSON},
		{"text", "json", "json", logs.Text},
		{"json", "", "", logs.JSON},
	} {
		t.Setenv(logs.EnvVar, c.env)
		got, err := resolveLogFormat(c.flag, c.cfg)
		require.NoError(t, err, "%+v", c)
		require.Equal(t, c.want, got, "%+v", c)
	}
	for _, c := range []struct{ flag, env, cfg, from string }{
		{"xml", "json", "json", "--log-format"},
		{"", "XML", "json", "$FDP_LOG_FORMAT"},
		{"", "", "yaml", "log_format"},
	} {
		t.Setenv(logs.EnvVar, c.env)
		_, err := resolveLogFormat(c.flag, c.cfg)
		require.Error(t, err, "%+v", c)
		require.True(t, strings.HasPrefix(err.Error(), c.from+": "), "%v", err)
		require.Contains(t, err.Error(), `want "text" or "json"`)
		require.NotContains(t, err.Error(), "\n")
	}
}

// durationAfter finds the duration written after each label.
func durationAfter(t *testing.T, s string, labels ...string) {
	t.Helper()
	for _, l := range labels {
		m := regexp.MustCompile(regexp.QuoteMeta(l) + ` ([0-9.]+(?:ns|µs|ms|s))\b`).FindStringSubmatch(s)
		require.NotNil(t, m, "no duration after %q in:\n%s", l, s)
		_, err := time.ParseDuration(m[1])
		require.NoError(t, err, m[1])
	}
}

// TestFiguresRounded: the status line and the summary show the engine's
// durations (percentiles of its histograms, its maxima, the run's length)
// with at most three significant digits, even when what was measured has
// more; in the JSON format each of their lines is one record.
func TestFiguresRounded(t *testing.T) {
	useTempShm(t)
	tw := testWorld().withDefaults()
	p := Params{Entities: 100}
	w, err := tw.newWorld(p)
	require.NoError(t, err)
	sim, err := tw.Simulation(w, false, p)
	require.NoError(t, err)
	var logBuf bytes.Buffer
	eng, err := host.New(host.Config{Instance: uniqueInstance(), Logger: logs.New(&logBuf, logs.Text)}, w, sim)
	require.NoError(t, err)
	defer eng.Close()
	var st host.FrameStats
	for range 5 {
		st = eng.Step()
		require.NoError(t, st.PublishErr)
	}
	// Figures with more digits than they are worth: a power-of-two bucket
	// bound, a measured maximum.
	for _, d := range []time.Duration{524288, 2097152, 8388607, 1234567891} {
		eng.Hist.Record(d)
		eng.PubHist.Record(d)
		eng.WakeHist.Record(d)
	}
	line := statusLine(eng, st, 100, 1000300*time.Microsecond, 60, 0, 0, 0, 1, 0, 0)
	durationAfter(t, line, "publish p50", "p99", "frame p99", "tick wake p50")
	require.Empty(t, testutil.OverPreciseDurations(line), line)

	var sum bytes.Buffer
	printSummary(&sum, eng, 10002345*time.Microsecond, 1, 0, 0, nil)
	durationAfter(t, sum.String(), "in", "frame time p50", "max", "publish p50", "fast-tier tick wake latency p50")
	require.Contains(t, sum.String(), "in 10s,")
	require.Empty(t, testutil.OverPreciseDurations(sum.String()), sum.String())

	var stdout, stderr bytes.Buffer
	out := newOutput(logs.JSON, &stdout, &stderr)
	fmt.Fprintln(out.status, line)
	printSummary(out.out, eng, 10*time.Second, 1, 0, 0, func(w io.Writer) { fmt.Fprintln(w, "world line") })
	out.close()
	for name, b := range map[string]*bytes.Buffer{"stdout": &stdout, "stderr": &stderr} {
		n := 0
		for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			var rec struct{ Level, Msg string }
			require.NoError(t, json.Unmarshal([]byte(l), &rec), "%s: %q", name, l)
			require.Equal(t, "INFO", rec.Level)
			require.NotEmpty(t, rec.Msg)
			n++
		}
		require.Positive(t, n, name)
	}
	require.Contains(t, stderr.String(), `"msg":"status: frame `)
	require.Contains(t, stdout.String(), `"msg":"== FDP engine summary =="`)
	require.Contains(t, stdout.String(), `"msg":"world line"`, "World.Summary's lines are records too")
}
