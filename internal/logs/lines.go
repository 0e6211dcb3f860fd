package logs

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
)

// Lines is an io.Writer that logs each line written to it as one record
// (the line is the message) at a level: what a command prints for people,
// a status line or a summary, becomes records in the JSON format, so that
// every line of its output is one JSON object. Blank lines are dropped. A
// line is logged once its newline is written; Flush logs what is left.
type Lines struct {
	log   *slog.Logger
	level slog.Level
	mu    sync.Mutex
	buf   []byte
}

// NewLines returns a Lines logging to log at level.
func NewLines(log *slog.Logger, level slog.Level) *Lines { return &Lines{log: log, level: level} }

// Write logs every complete line of p (and of what was written before).
func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) == 0 {
		l.buf = nil // let a long summary's buffer go
	}
	return len(p), nil
}

// Flush logs the last line if it had no newline.
func (l *Lines) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emit(l.buf)
	l.buf = nil
}

func (l *Lines) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	l.log.Log(context.Background(), l.level, string(line))
}
