package supervisor

import (
	"log/slog"
	"strconv"
	"strings"
)

// Child log lines: a child that logs with slog's text handler (the engine,
// modules built on the SDK) writes lines like
//
//	time=2026-12-02T10:00:00.000Z level=WARN msg="module died" module=ai-1 err="exit status 1"
//
// Logged as the message of the supervisor's own record, such a line came
// out wrapped twice: msg="time=... level=WARN msg=\"module died\" ...". The
// supervisor re-emits it instead as one record of its own at the child's
// level, with the child's message and attributes (its time is dropped: the
// supervisor's record has one). Any other line is logged as it is.

// childRecord is a parsed slog text line.
type childRecord struct {
	level slog.Level
	msg   string
	attrs []any // key, value, key, value, ...
}

// parseChildLine parses line as one slog text record: logfmt pairs
// key=value, a value bare or double-quoted (Go syntax), beginning with
// time=, level= and msg= in that order. It reports false for any other
// line.
func parseChildLine(line string) (childRecord, bool) {
	var r childRecord
	rest := line
	seen := 0
	for rest != "" {
		key, val, tail, ok := nextPair(rest)
		if !ok {
			return childRecord{}, false
		}
		rest = tail
		switch {
		case seen == 0:
			if key != "time" {
				return childRecord{}, false
			}
		case seen == 1:
			if key != "level" || r.level.UnmarshalText([]byte(val)) != nil {
				return childRecord{}, false
			}
		case seen == 2:
			if key != "msg" {
				return childRecord{}, false
			}
			r.msg = val
		default:
			r.attrs = append(r.attrs, key, val)
		}
		seen++
	}
	return r, seen >= 3
}

// nextPair reads `key=value` and the spaces after it from the front of s.
func nextPair(s string) (key, val, rest string, ok bool) {
	eq := strings.IndexByte(s, '=')
	if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
		return "", "", "", false
	}
	key, s = s[:eq], s[eq+1:]
	if strings.HasPrefix(s, `"`) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", "", false
		}
		if val, err = strconv.Unquote(q); err != nil {
			return "", "", "", false
		}
		s = s[len(q):]
		if s != "" && s[0] != ' ' {
			return "", "", "", false
		}
	} else {
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		val, s = s[:end], s[end:]
	}
	return key, val, strings.TrimLeft(s, " "), true
}
