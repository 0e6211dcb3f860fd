package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/stretchr/testify/require"
)

// genAttr is a generated attribute of a child's record: a leaf value or a
// group of attributes.
type genAttr struct {
	key   string
	val   any // string, int64, uint64, float64, bool, time.Duration; nil for a group
	group []genAttr
}

// genKeys are the attribute keys drawn, the supervisor's own among them.
var genKeys = []string{"module", "err", "n", "slot", "frame", "a.b", "ünï", "k y", `q"k`, "child", "stream", "msg", "time", "level"}

// genStrings are string values drawn: what would break a parser that looks
// for its own syntax in values.
var genStrings = []string{"", "x", "ai-1", "exit status 1", `level=INFO msg="x"`, `time=2026-01-01T00:00:00Z level=WARN msg=y`,
	`{"msg":"nested","level":"INFO"}`, "a=b c", `back\slash "quoted"`, "tab\there", "line\nbreak", "ünïcødé ✓", "\u2028", "42", "true", "null"}

func genValue(rng *rand.Rand, depth int) genAttr {
	a := genAttr{key: genKeys[rng.IntN(len(genKeys))]}
	switch k := rng.IntN(9); {
	case k == 0 && depth < 3:
		for range rng.IntN(4) { // 0..3 members: some groups are empty
			a.group = append(a.group, genValue(rng, depth+1))
		}
		if a.group == nil {
			a.group = []genAttr{}
		}
	case k <= 2:
		a.val = genStrings[rng.IntN(len(genStrings))]
	case k == 3:
		a.val = rng.Int64() - rng.Int64()
	case k == 4:
		a.val = rng.Uint64() | 1<<63 // beyond int64
	case k == 5:
		a.val = []float64{0.5, -1.25, 3, 1e21, 1e-7, math.Pi}[rng.IntN(6)]
	case k == 6:
		a.val = rng.IntN(2) == 0
	default:
		a.val = time.Duration(rng.Int64N(int64(10 * time.Second)))
	}
	return a
}

// slogAttr is how the child logs a.
func (a genAttr) slogAttr() slog.Attr {
	if a.val == nil {
		var as []any
		for _, m := range a.group {
			as = append(as, m.slogAttr())
		}
		return slog.Group(a.key, as...)
	}
	return slog.Any(a.key, a.val)
}

// modelAttrs is what the supervisor re-emits for the attributes a child
// logged: a group without a leaf anywhere in it is gone (slog writes no
// empty group), a duration is its Round3 string (the child's handler
// wrote it so), a float the number the child's JSON wrote, and a top-level key that the supervisor's record has
// itself is prefixed child_.
func modelAttrs(as []genAttr, top bool) []slog.Attr {
	var out []slog.Attr
	for _, a := range as {
		key := a.key
		if top && (key == "child" || key == "stream" || key == "msg" || key == "time" || key == "level") {
			key = "child_" + key
		}
		switch v := a.val.(type) {
		case nil:
			if g := modelAttrs(a.group, false); len(g) > 0 {
				out = append(out, slog.Attr{Key: key, Value: slog.GroupValue(g...)})
			}
		case time.Duration:
			out = append(out, slog.String(key, logs.Round3(v).String()))
		case float64:
			// Kept as the child's JSON wrote it (never rounded through a
			// float64 of the supervisor's): the same number in JSON, that
			// text in text.
			js, err := json.Marshal(v)
			if err != nil {
				panic(err)
			}
			out = append(out, slog.Any(key, json.Number(js)))
		default:
			out = append(out, slog.Any(key, v))
		}
	}
	return out
}

// garbage are lines that are neither a JSON object nor a slog text line.
var garbage = []string{
	"panic: runtime error: index out of range [3] with length 3",
	"goroutine 1 [running]:",
	"\tmain.main()\r",
	"{",
	`{"msg":"x"} trailing`,
	`{"msg":}`,
	`{"a":[1,2}`,
	"[1,2,3]",
	`"just a string"`,
	"status: frame 61  60.9 fps  publish p50 524µs",
	"level=INFO msg=x", // no time: not a slog text line
	"\xff\xfe invalid utf-8",
}

// dropTime removes the time of the supervisor's records: both sides of
// the comparison are written at different instants.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// TestChildRecordsModel: a child's output, records written by slog's JSON
// handler (random levels, messages, attributes of every kind, nested and
// empty groups, the supervisor's own keys) mixed with lines that are not
// records, goes through the supervisor's pump over a real pipe; each line
// comes out as exactly the record the model says, in the supervisor's
// format (JSON and text): the child's level, message and attributes after
// child and stream, a non-record line as the message of an INFO record,
// blank lines dropped. The last stderr line kept for a refusal is the last
// record's text.
func TestChildRecordsModel(t *testing.T) {
	for _, f := range []logs.Format{logs.JSON, logs.Text} {
		t.Run(f.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(f)))
			handler := func(w *bytes.Buffer) slog.Handler {
				opts := &slog.HandlerOptions{Level: slog.Level(-100), ReplaceAttr: dropTime}
				if f == logs.JSON {
					return slog.NewJSONHandler(w, opts)
				}
				return slog.NewTextHandler(w, opts)
			}
			var child, got, want bytes.Buffer
			childLog := slog.New(logs.NewHandler(&child, logs.JSON, slog.Level(-100)))
			wantLog := slog.New(handler(&want)).With("child", "ai-1", "stream", "stderr")
			var last string
			for i := range 2000 {
				switch rng.IntN(10) {
				case 0:
					g := garbage[rng.IntN(len(garbage))]
					child.WriteString(g + "\n")
					wantLog.Info(strings.TrimRight(g, "\r"))
					last = strings.TrimRight(g, "\r")
				case 1:
					child.WriteString([]string{"\n", "  \n", "\r\n"}[rng.IntN(3)]) // dropped
				case 2:
					// A child that logs slog text itself: its values are strings.
					var tl bytes.Buffer
					slog.New(slog.NewTextHandler(&tl, nil)).Warn("text record", "n", i, "err", "a b")
					child.Write(tl.Bytes())
					wantLog.Warn("text record", "n", i, "err", "a b")
					last = fmt.Sprintf("text record n=%d err=a b", i)
				default:
					level := slog.Level(rng.IntN(21) - 8)
					msg := genStrings[rng.IntN(len(genStrings))]
					var as []genAttr
					for range rng.IntN(6) {
						as = append(as, genValue(rng, 0))
					}
					var sa []slog.Attr
					for _, a := range as {
						sa = append(sa, a.slogAttr())
					}
					childLog.LogAttrs(context.Background(), level, msg, sa...)
					model := modelAttrs(as, true)
					wantLog.LogAttrs(context.Background(), level, msg, model...)
					last = childRecord{msg: msg, attrs: model}.text()
				}
			}
			r, w, err := os.Pipe()
			require.NoError(t, err)
			s := &Supervisor{log: slog.New(handler(&got)), pipes: map[*os.File]struct{}{r: {}}}
			out := newProcOut()
			s.outWG.Add(1)
			go s.pump(r, "ai-1", "stderr", out)
			go func() {
				_, _ = w.Write(child.Bytes())
				w.Close()
			}()
			s.outWG.Wait()
			gotLines, wantLines := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
			require.Equal(t, len(wantLines), len(gotLines))
			for i := range wantLines {
				require.Equal(t, wantLines[i], gotLines[i], "record %d", i)
			}
			require.Equal(t, last, *out.lastErr.Load())
		})
	}
}

// TestParseChildText: a line written by slog's text handler parses back to
// its level, message and attributes, whatever its quoting; anything else
// does not parse (and is logged as it is).
func TestParseChildText(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l.Warn(`module died; restarting "it"`, "module", "ai-1", "err", "exit status 1", "n", 3, "empty", "", "eq", "a=b c", "child", "x", "f", -2.5e-9, "q", "3 ")
	line := strings.TrimRight(buf.String(), "\n")
	r, ok := parseChildText(line)
	require.True(t, ok, line)
	require.Equal(t, slog.LevelWarn, r.level)
	require.Equal(t, `module died; restarting "it"`, r.msg)
	require.Len(t, r.attrs, 8)
	// Bare numbers are numbers (a module's own text logger's "slot=2"
	// came out as the string "2"), quoted values strings.
	for i, want := range []slog.Attr{slog.String("module", "ai-1"), slog.String("err", "exit status 1"), slog.Int64("n", 3),
		slog.String("empty", ""), slog.String("eq", "a=b c"), slog.String("child_child", "x"), slog.Any("f", json.Number("-2.5e-09")), slog.String("q", "3 ")} {
		require.True(t, want.Equal(r.attrs[i]), "%v, want %v", r.attrs[i], want)
	}

	for _, bad := range []string{
		"status: frame 61  60.9 fps",                      // the engine's status line
		"level=INFO msg=x",                                // no time
		`time=2026-01-01T00:00:00Z level=LOUD msg=x`,      // no such level
		`time=2026-01-01T00:00:00Z level=INFO msg="open`,  // unterminated quote
		`time=2026-01-01T00:00:00Z level=INFO`,            // no msg
		`time=2026-01-01T00:00:00Z level=INFO msg="a"b=1`, // no space after a quoted value
		"",
	} {
		_, ok := parseChildText(bad)
		require.False(t, ok, "%q", bad)
	}
}

// TestParseChildJSON: what a JSON line that is not exactly slog's becomes:
// an unknown level is an attribute, no msg an empty message, members after
// the first time, level and msg are attributes; anything but one object
// is no record.
func TestParseChildJSON(t *testing.T) {
	r, ok := parseChildJSON(` {"level":"loud","a":{"b":[1,"x",{"c":null}]},"time":1,"n":-0.5} `)
	require.True(t, ok)
	require.Equal(t, slog.LevelInfo, r.level)
	require.Equal(t, "", r.msg)
	require.Equal(t, "child_level=loud a.b=[1 x map[c:<nil>]] child_time=1 n=-0.5", r.text())

	r, ok = parseChildJSON(`{"time":"t","level":"ERROR+2","msg":"m","msg":"again","u":18446744073709551615,"big":1e999}`)
	require.True(t, ok)
	require.Equal(t, slog.LevelError+2, r.level)
	require.Equal(t, "m child_msg=again u=18446744073709551615 big=1e999", r.text())

	for _, bad := range []string{"", "{", "{}{}", `{"a":1}x`, `{"a"}`, `{1:2}`, "[]", "null", `{"a":1,}`} {
		_, ok := parseChildJSON(bad)
		require.False(t, ok, "%q", bad)
	}
}

// TestChildLineReemitted: through a real pipe, a JSON record of a child's
// comes out as one record of the supervisor's at the child's level with
// its message and attributes, not the child's line quoted inside the
// supervisor's msg; a plain line as the message of its own record.
func TestChildLineReemitted(t *testing.T) {
	var child, sup bytes.Buffer
	logs.New(&child, logs.JSON).Error("breaker open", "module", "ai-2", slog.Group("tick", "p99", 2097152*time.Nanosecond))
	child.WriteString("status: frame 61  60.9 fps\n")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	s := &Supervisor{log: logs.New(&sup, logs.Text), pipes: map[*os.File]struct{}{r: {}}}
	out := newProcOut()
	s.outWG.Add(1)
	go s.pump(r, "engine", "stderr", out)
	_, err = w.Write(child.Bytes())
	require.NoError(t, err)
	require.NoError(t, w.Close())
	s.outWG.Wait()
	lines := strings.Split(strings.TrimSpace(sup.String()), "\n")
	require.Len(t, lines, 2, sup.String())
	require.Contains(t, lines[0], `level=ERROR msg="breaker open" child=engine stream=stderr module=ai-2 tick.p99=2.1ms`)
	require.NotContains(t, lines[0], `msg="time=`)
	require.NotContains(t, lines[0], `msg="{`)
	require.Contains(t, lines[1], `level=INFO msg="status: frame 61  60.9 fps" child=engine stream=stderr`)
}

// BenchmarkChildRecord: parsing one of the engine's records (a JSON line
// with a group) and re-emitting it as the supervisor's, against the
// baseline of logging the same line as the message of a record (what a
// non-record line costs), both to a JSON handler writing to io.Discard.
func BenchmarkChildRecord(b *testing.B) {
	var line bytes.Buffer
	logs.New(&line, logs.JSON).Info("module died; leases and ring reclaimed", "module", "ai-2", "slot", 1, "pid", 19156,
		slog.Group("tick", "p50", 16800*time.Microsecond, "p99", 27500*time.Microsecond))
	text := strings.TrimSpace(line.String())
	log := logs.New(io.Discard, logs.JSON).With("child", "engine", "stream", "stderr")
	b.Run("record", func(b *testing.B) {
		for b.Loop() {
			rec := parseChildLine(text)
			log.LogAttrs(context.Background(), rec.level, rec.msg, rec.attrs...)
		}
	})
	b.Run("baseline-line-as-msg", func(b *testing.B) {
		for b.Loop() {
			log.Info(text)
		}
	})
}

// FuzzChildLine: whatever line a child writes, parsing it never fails and
// re-emitting it gives exactly one line of the supervisor's log, in JSON
// one object, in text one record beginning with time=, level= and msg=.
func FuzzChildLine(f *testing.F) {
	for _, s := range append(append([]string{}, garbage...), genStrings...) {
		f.Add(s)
	}
	f.Add(`{"time":"t","level":"WARN","msg":"m","a":{"b":[1,{"c":2}]},"child":"x"}`)
	f.Add(`time=2026-01-01T00:00:00Z level=INFO msg="a b" k=v`)
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\n") {
			return // pump splits lines first
		}
		rec := parseChildLine(line)
		for _, format := range []logs.Format{logs.JSON, logs.Text} {
			var buf bytes.Buffer
			logs.New(&buf, format).With("child", "c", "stream", "stderr").LogAttrs(context.Background(), rec.level, rec.msg, rec.attrs...)
			out := buf.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("%s: %q gave %q", format, line, out)
			}
			if format == logs.JSON {
				var m map[string]any
				if err := json.Unmarshal([]byte(out), &m); err != nil {
					t.Fatalf("%q gave %q: %v", line, out, err)
				}
			} else if !strings.HasPrefix(out, "time=") || !strings.Contains(out, " level=") || !strings.Contains(out, " msg=") {
				t.Fatalf("%q gave %q", line, out)
			}
		}
	})
}

// TestChildNumbersExact: a child's numbers are re-emitted as written, in
// JSON as numbers: integers of 64 bits (2^53+1, beyond int64) and beyond
// them, and decimals a float64 would round (they came out rounded).
func TestChildNumbersExact(t *testing.T) {
	const line = `{"level":"INFO","msg":"m","a":9007199254740993,"b":18446744073709551615,"c":123456789012345678901234567890,"d":0.10000000000000000555,"e":-1e400,"g":{"h":[12345678901234567890123]}}`
	r, ok := parseChildJSON(line)
	require.True(t, ok)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).LogAttrs(context.Background(), r.level, r.msg, r.attrs...)
	got := buf.String()
	got = got[strings.Index(got, `"level"`):]
	require.Equal(t, line[1:]+"\n", got)
	require.Equal(t, "m a=9007199254740993 b=18446744073709551615 c=123456789012345678901234567890 d=0.10000000000000000555 e=-1e400 g.h=[12345678901234567890123]", r.text())
}
