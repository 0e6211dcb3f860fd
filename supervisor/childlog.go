package supervisor

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// Child records. The supervisor starts every child with $FDP_LOG_FORMAT set
// to json (logs.EnvVar): the engine and modules built on the SDK then write
// one JSON object per line on stderr, as slog's JSON handler does:
//
//	{"time":"2026-12-02T10:00:00.000Z","level":"WARN","msg":"module died","module":"ai-1","err":"exit status 1"}
//
// The supervisor re-emits each as one record of its own, in its own log's
// format, at the child's level, with the child's message and attributes
// (nested groups kept as groups) after its own child and stream attributes;
// the child's time is dropped (the supervisor's record has one). A line
// that is not a JSON object (a Go panic trace, a C library's output, a
// status line) is one record with the line as its message. Either way a
// child's line is never the escaped message of a line of the supervisor's.
//
// A child that writes slog text lines anyway (a module with a text logger
// of its own, an engine command whose config passes --log-format text) is
// parsed too (parseChildText), so that its records are not nested either.

// childRecord is one parsed line of a child's output.
type childRecord struct {
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// reservedKeys are the keys of the supervisor's own record: a child's
// attribute of one of these names is re-emitted as "child_<name>", so that
// no record has a key twice.
var reservedKeys = map[string]bool{"time": true, "level": true, "msg": true, "child": true, "stream": true}

// parseChildLine parses one line of a child's output: a JSON object
// (parseChildJSON), else a slog text line (parseChildText), else the line
// as the message of an INFO record.
func parseChildLine(line string) childRecord {
	if r, ok := parseChildJSON(line); ok {
		return r
	}
	if r, ok := parseChildText(line); ok {
		return r
	}
	return childRecord{level: slog.LevelInfo, msg: line}
}

// parseChildJSON parses line as one JSON object: its first "time" (a
// string, dropped), "level" (a level name: DEBUG, INFO, WARN, ERROR, with
// an offset such as INFO+2) and "msg" (a string) are the record's; every
// other member is an attribute, in order, an object becoming a group. An
// object without a level is INFO, without a msg has an empty message. It
// reports false for anything but exactly one JSON object.
func parseChildJSON(line string) (childRecord, bool) {
	s := strings.TrimSpace(line)
	if !strings.HasPrefix(s, "{") {
		return childRecord{}, false
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the '{' seen above
		return childRecord{}, false
	}
	r := childRecord{level: slog.LevelInfo}
	var haveTime, haveLevel, haveMsg bool
	for dec.More() {
		key, v, err := member(dec)
		if err != nil {
			return childRecord{}, false
		}
		str, isStr := v.Any().(string)
		switch {
		case key == "time" && !haveTime && isStr:
			haveTime = true
			continue
		case key == "level" && !haveLevel && isStr && r.level.UnmarshalText([]byte(str)) == nil:
			haveLevel = true
			continue
		case key == "msg" && !haveMsg && isStr:
			haveMsg, r.msg = true, str
			continue
		case reservedKeys[key]:
			key = "child_" + key
		}
		r.attrs = append(r.attrs, slog.Attr{Key: key, Value: v})
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return childRecord{}, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return childRecord{}, false // something after the object
	}
	return r, true
}

// member reads `"key": value` of an object.
func member(dec *json.Decoder) (string, slog.Value, error) {
	t, err := dec.Token()
	if err != nil {
		return "", slog.Value{}, err
	}
	key, ok := t.(string)
	if !ok {
		return "", slog.Value{}, fmt.Errorf("key %v", t)
	}
	v, err := value(dec)
	return key, v, err
}

// value reads one JSON value as a slog value: an object is a group (its
// members in order), a number an int64 or a uint64 when it holds it, else
// its json.Number (exact), an array a []any (of string, bool,
// nil, json.Number, []any, map[string]any).
func value(dec *json.Decoder) (slog.Value, error) {
	t, err := dec.Token()
	if err != nil {
		return slog.Value{}, err
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			var attrs []slog.Attr
			for dec.More() {
				k, v, err := member(dec)
				if err != nil {
					return slog.Value{}, err
				}
				attrs = append(attrs, slog.Attr{Key: k, Value: v})
			}
			if _, err := dec.Token(); err != nil {
				return slog.Value{}, err
			}
			return slog.GroupValue(attrs...), nil
		case '[':
			var elems []any
			for dec.More() {
				var e any
				if err := dec.Decode(&e); err != nil {
					return slog.Value{}, err
				}
				elems = append(elems, e)
			}
			if _, err := dec.Token(); err != nil {
				return slog.Value{}, err
			}
			return slog.AnyValue(elems), nil
		}
		return slog.Value{}, fmt.Errorf("unexpected %v", t)
	case json.Number:
		return number(t), nil
	case string:
		return slog.StringValue(t), nil
	case bool:
		return slog.BoolValue(t), nil
	case nil:
		return slog.AnyValue(nil), nil
	}
	return slog.Value{}, fmt.Errorf("unexpected %v", t)
}

// number is n as an int64 or a uint64 value when it is an integer that
// one holds; else n itself (a json.Number: written as the same number
// in JSON, the same text in text), so that no number is rounded
// (1e400, an integer beyond 64 bits, 0.1000000000000000055 are kept as
// written; a float64 would round them).
func number(n json.Number) slog.Value {
	s := n.String()
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return slog.Int64Value(i)
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return slog.Uint64Value(u)
	}
	return slog.AnyValue(n)
}

// text renders the record on one line for people, as the summary shows a
// refused module's last line: the message, then key=value for each
// attribute (a group's as group.key=value), values unquoted.
func (r childRecord) text() string {
	var b strings.Builder
	b.WriteString(r.msg)
	var walk func(prefix string, attrs []slog.Attr)
	walk = func(prefix string, attrs []slog.Attr) {
		for _, a := range attrs {
			if a.Value.Kind() == slog.KindGroup {
				walk(prefix+a.Key+".", a.Value.Group())
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s%s=%v", prefix, a.Key, a.Value)
		}
	}
	walk("", r.attrs)
	return b.String()
}

// parseChildText parses line as one slog text record: logfmt pairs
// key=value, a value bare or double-quoted (Go syntax), beginning with
// time=, level= and msg= in that order. A bare value written as a number
// is a number (text has no types: slog writes the string "2" as 2 too;
// a number is the likelier, and a module's own text logger writes
// numbers so); quoted values are strings. It reports false for any other
// line.
func parseChildText(line string) (childRecord, bool) {
	var r childRecord
	rest := line
	seen := 0
	for rest != "" {
		key, val, tail, bare, ok := nextPair(rest)
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
			if reservedKeys[key] {
				key = "child_" + key
			}
			v := slog.StringValue(val)
			if bare && isJSONNumber(val) {
				v = number(json.Number(val))
			}
			r.attrs = append(r.attrs, slog.Attr{Key: key, Value: v})
		}
		seen++
	}
	return r, seen >= 3
}

// isJSONNumber reports whether s is a number in JSON's syntax.
func isJSONNumber(s string) bool {
	if s == "" || (s[0] != '-' && (s[0] < '0' || s[0] > '9')) {
		return false
	}
	var n json.Number
	return json.Unmarshal([]byte(s), &n) == nil
}

// nextPair reads `key=value` and the spaces after it from the front of s;
// bare when the value was not quoted.
func nextPair(s string) (key, val, rest string, bare, ok bool) {
	eq := strings.IndexByte(s, '=')
	if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
		return "", "", "", false, false
	}
	key, s = s[:eq], s[eq+1:]
	if strings.HasPrefix(s, `"`) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", "", false, false
		}
		if val, err = strconv.Unquote(q); err != nil {
			return "", "", "", false, false
		}
		s = s[len(q):]
		if s != "" && s[0] != ' ' {
			return "", "", "", false, false
		}
	} else {
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		val, s, bare = s[:end], s[end:], true
	}
	return key, val, strings.TrimLeft(s, " "), bare, true
}
