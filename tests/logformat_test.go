package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// The black-box tests of --log-format: `engine up` as `make demo` runs it
// (the embedded demo config, a module SIGKILLed every second by --chaos),
// in a shared-memory directory of its own, and every line it writes read
// back in the format asked for.

// demoChildren are the children of the embedded demo config.
var demoChildren = []string{"engine", "telemetry", "ai-1", "ai-2", "ai-3", "alert", "analysis"}

// runUp runs `engine up` with args in a private shared-memory directory
// until it exits (its --duration) and returns its stdout and stderr.
func runUp(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	bin := shippedBinaries(t)
	dir, err := os.MkdirTemp("/dev/shm", "fdp-logs-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	var out, errb bytes.Buffer
	cmd := exec.Command(filepath.Join(bin, "engine"), append([]string{"up", "--instance", uniqueInstance(t, "lf")}, args...)...)
	cmd.Env = append(os.Environ(), "FDP_SHM_DIR="+dir, "FDP_LOG_FORMAT=") // the format is the flag's or the config's
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Run(), "engine up:\n%s", errb.String())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "the instance's segments are removed at the end")
	return out.String(), errb.String()
}

// lines splits output into its lines (none for empty output).
func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// nested matches what a record of a child's looks like when it is written
// inside another record: a slog text line or a JSON object.
var nested = regexp.MustCompile(`(^|\s)(time|level)=|\{\s*"`)

// strings returns every string value of a decoded JSON value, nested ones
// included, with its key path.
func stringValues(prefix string, v any, out map[string]string) {
	switch v := v.(type) {
	case string:
		out[prefix] = v
	case map[string]any:
		for k, x := range v {
			stringValues(prefix+"."+k, x, out)
		}
	case []any:
		for i, x := range v {
			stringValues(fmt.Sprintf("%s[%d]", prefix, i), x, out)
		}
	}
}

// TestUpLogFormatJSON: `engine up --log-format json` (the demo, with
// chaos): every line of its stdout and of its stderr is one JSON object
// with time, level and msg; the children's records are re-emitted with
// child naming the child (and stream), every child among them, with their
// own attributes; no message or value holds a record of its own (a slog
// text line or a JSON object) and no duration has more than three
// significant digits; the status lines, a chaos kill, the restart and the
// summaries are records too.
func TestUpLogFormatJSON(t *testing.T) {
	stdout, stderr := runUp(t, "--log-format", "json", "--duration", "5s", "--chaos", "1s")
	var recs []map[string]any
	for _, stream := range []string{stdout, stderr} {
		for _, l := range lines(stream) {
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &rec), "not one JSON object: %q", l)
			for _, k := range []string{"time", "level", "msg"} {
				_, ok := rec[k].(string)
				require.True(t, ok, "no %s: %q", k, l)
			}
			vals := map[string]string{}
			stringValues("", rec, vals)
			for k, v := range vals {
				if k == ".time" {
					continue
				}
				require.False(t, nested.MatchString(v), "a record inside %s: %q", k, l)
				require.Empty(t, testutil.OverPreciseDurations(v), "%s: %q", k, l)
			}
			recs = append(recs, rec)
		}
	}
	fromChild := map[string]int{}
	var status, died, started, childSum, supSum, chaos int
	for _, r := range recs {
		msg := r["msg"].(string)
		if stream, ok := r["stream"]; ok {
			child, ok := r["child"].(string)
			require.True(t, ok && (stream == "stdout" || stream == "stderr"), "a child's record without child: %v", r)
			fromChild[child]++
			if child == "engine" && strings.HasPrefix(msg, "status: frame ") {
				status++
			}
			if child == "engine" && msg == "module joined" {
				require.Contains(t, demoChildren, r["module"], "the engine's own attributes: %v", r)
				require.IsType(t, float64(0), r["slot"], "numbers stay numbers: %v", r)
			}
		}
		switch msg {
		case "child died":
			if r["status"] == "signal: killed" {
				died++
			}
		case "child started":
			started++
		case "child summary":
			childSum++
		case "supervisor summary":
			supSum++
		case "chaos":
			if k, _ := r["kills"].(float64); k >= 1 {
				chaos++
			}
		}
	}
	for _, c := range demoChildren {
		require.Positive(t, fromChild[c], "no record of %s's (children's records: %v)", c, fromChild)
	}
	require.GreaterOrEqual(t, status, 3, "the engine's status lines")
	require.Positive(t, died, "a chaos kill is logged")
	require.Greater(t, started, len(demoChildren), "and the module restarted")
	require.Equal(t, len(demoChildren), childSum)
	require.Equal(t, 1, supSum)
	require.Equal(t, 1, chaos)
	t.Logf("%d records; %d from children: %v", len(recs), len(recs)-started-childSum-supSum, fromChild)
}

// logfmtPair is one key=value of a slog text line, the value bare or a
// quoted Go string.
var logfmtPair = regexp.MustCompile(`^([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)`)

// parseLogfmt parses a slog text line into its pairs, in order; false when
// it is not exactly that.
func parseLogfmt(line string) ([][2]string, bool) {
	var out [][2]string
	for rest := line; rest != ""; {
		m := logfmtPair.FindStringSubmatch(rest)
		if m == nil {
			return nil, false
		}
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, false
			}
			v = u
		}
		out = append(out, [2]string{m[1], v})
		rest = rest[len(m[0]):]
	}
	return out, len(out) >= 3
}

// TestUpLogFormatText: `engine up` with a config that asks for JSON logs
// and --log-format text, which wins: every line of its stderr is one slog
// text record (time=, level=, msg=, then key=value pairs) and none holds
// another record in its message or values (msg="time=... was how a child's
// line came out); the children's records carry child=; durations have at
// most three significant digits there and in the summary on stdout, which
// is text for people.
func TestUpLogFormatText(t *testing.T) {
	cfg := `instance: x
engine: {command: [engine, run, --entities, "20000"], restart: true}
modules:
  - {name: telemetry, command: [modrunner, telemetry], tier: fast, every: 1}
  - {name: ai-1, command: [modrunner, ai], tier: slow, every: 6, group: ai}
hang: {heartbeat_timeout: 2s, attach_timeout: 10s, engine_timeout: 2s, engine_start_timeout: 10s}
log_format: json
`
	path := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	stdout, stderr := runUp(t, "--config", path, "--log-format", "text", "--duration", "4s", "--chaos", "1s")
	fromChild := map[string]int{}
	for _, l := range lines(stderr) {
		pairs, ok := parseLogfmt(l)
		require.True(t, ok, "not one logfmt record: %q", l)
		require.Equal(t, []string{"time", "level", "msg"}, []string{pairs[0][0], pairs[1][0], pairs[2][0]}, l)
		require.NotContains(t, l, `msg="time=`)
		for _, p := range pairs[1:] {
			require.False(t, nested.MatchString(p[1]), "a record inside %s: %q", p[0], l)
			require.Empty(t, testutil.OverPreciseDurations(p[1]), "%s: %q", p[0], l)
		}
		if len(pairs) > 4 && pairs[3][0] == "child" && pairs[4][0] == "stream" {
			fromChild[pairs[3][1]]++
		}
	}
	for _, c := range []string{"engine", "telemetry", "ai-1"} {
		require.Positive(t, fromChild[c], "no record of %s's: %v", c, fromChild)
	}
	require.Contains(t, stdout, "== supervisor summary ==")
	require.Empty(t, testutil.OverPreciseDurations(stdout), stdout)
}

// TestLogFormatInvalid: an invalid --log-format (or $FDP_LOG_FORMAT) is one
// line naming the valid values: exit 1 from engine run and up, 2 (usage)
// from modrunner's flag, and 78 (a refusal, not restarted by a supervisor)
// from a module given it in its environment.
func TestLogFormatInvalid(t *testing.T) {
	bin := shippedBinaries(t)
	for _, c := range []struct {
		env  string
		args []string
		exit int
	}{
		{"", []string{"engine", "run", "--log-format", "xml"}, 1},
		{"", []string{"engine", "up", "--log-format", "xml"}, 1},
		{"FDP_LOG_FORMAT=xml", []string{"engine", "run", "--duration", "1s"}, 1},
		{"", []string{"modrunner", "--log-format", "xml", "telemetry"}, 2},
		{"FDP_LOG_FORMAT=xml", []string{"modrunner", "telemetry"}, layout.ExitRefused},
	} {
		cmd := exec.Command(filepath.Join(bin, c.args[0]), c.args[1:]...)
		cmd.Env = append(os.Environ(), c.env, "FDP_INSTANCE="+uniqueInstance(t, "lfbad"))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "%v %v: %v\n%s", c.env, c.args, err, out)
		require.Equal(t, c.exit, ee.ExitCode(), "%v %v: %s", c.env, c.args, out)
		for _, w := range []string{"xml", "text", "json"} { // quoted, and escaped again in a log line
			require.Contains(t, string(out), w, "%v %v", c.env, c.args)
		}
		if c.exit != 2 { // flag's usage follows its error line
			require.Len(t, lines(string(out)), 1, "%v %v: %s", c.env, c.args, out)
		}
	}
}
