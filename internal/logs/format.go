// Package logs is how FDP's processes write their logs and show durations:
// the log format of the whole process tree (text or JSON, Format), the
// handler that writes it (NewHandler: every duration attribute rounded by
// Round3), and Round3 itself, the one rounding of durations shown to people
// (logs, status lines, summaries, the inspectors' text).
//
// The supervisor starts its children with EnvVar=json and re-emits each of
// their records as one of its own (supervisor/childlog.go); the module SDK
// and `engine run` read EnvVar as their default format.
package logs

import (
	"fmt"
	"io"
	"log/slog"
)

// EnvVar is the environment variable that sets the log format of an FDP
// process that has no --log-format flag of its own, or the default of that
// flag: "text" or "json". The supervisor sets it to "json" for every child
// it starts.
const EnvVar = "FDP_LOG_FORMAT"

// Format is a log format.
type Format int

// Log formats.
const (
	// Text is slog's text handler: one logfmt record per line
	// (time=... level=INFO msg="..." key=value ...).
	Text Format = iota
	// JSON is slog's JSON handler: one JSON object per line
	// ({"time":...,"level":"INFO","msg":"...","key":value,...}).
	JSON
)

// Valid names the valid values of a format, for error messages.
const Valid = `"text" or "json"`

func (f Format) String() string {
	switch f {
	case Text:
		return "text"
	case JSON:
		return "json"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat parses "text" or "json".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "text":
		return Text, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("%q is not a log format: want %s", s, Valid)
}

// NewHandler returns a handler that writes records in format f to w, at
// level (nil: slog.LevelInfo) and above. Every duration attribute is
// written as a Go duration string rounded by Round3 ("524µs", "8.39ms",
// "1.2s"), in both formats: in JSON a duration is such a string, never a
// number of nanoseconds, so that a record keeps its figures when the
// supervisor re-emits it in the other format (time.ParseDuration reads it
// back; machine-readable figures are the metrics').
func NewHandler(w io.Writer, f Format, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: replaceAttr}
	if f == JSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// New returns a logger writing records in format f to w at slog.LevelInfo
// and above (NewHandler).
func New(w io.Writer, f Format) *slog.Logger { return slog.New(NewHandler(w, f, nil)) }

// replaceAttr rounds durations (NewHandler).
func replaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(Round3(a.Value.Duration()).String())
	}
	return a
}
