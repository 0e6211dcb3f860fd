package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// pump logs every line of one output stream of a child as one slog record
// (attributes child and stream), so lines of different children never
// interleave; a line the child logged with slog is re-emitted at its level
// with its message and attributes (childlog.go). Lines longer than 64 KiB are logged in pieces. It keeps the
// last non-empty stderr line in out.
func (s *Supervisor) pump(r *os.File, name, stream string, out *procOut) {
	defer s.outWG.Done()
	defer out.pumpDone()
	defer func() {
		s.mu.Lock()
		delete(s.pipes, r)
		s.mu.Unlock()
		r.Close()
	}()
	log := s.log.With("child", name, "stream", stream)
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			text := strings.TrimRight(string(line), "\r\n")
			if rec, ok := parseChildLine(text); ok {
				log.Log(context.Background(), rec.level, rec.msg, rec.attrs...)
			} else {
				log.Info(text)
			}
			if stream == "stderr" && strings.TrimSpace(text) != "" {
				out.lastErr.Store(&text)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// Status returns a snapshot of every child, the engine first.
func (s *Supervisor) Status() []ChildStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	out := make([]ChildStatus, 0, len(s.children))
	for _, c := range s.children {
		st := ChildStatus{
			Name: c.name, Engine: c.engine, State: c.state,
			Restarts: c.restarts, Deaths: c.deaths, Hangs: c.hangs, BreakerTrips: c.trips,
			LastExit: c.lastExit, DetectLatency: c.lastLat, Detect: c.detect, LastBackoff: c.lastDelay,
		}
		if c.state == StateRefused {
			st.Refusal = c.refusal
		}
		if c.proc != nil {
			st.PID = c.proc.Pid
			st.Uptime = now.Sub(c.started)
		}
		out = append(out, st)
	}
	return out
}

// percentile returns the p-th percentile (0..100, nearest rank) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	i = min(max(i, 0), len(sorted)-1)
	return sorted[i]
}

// Latencies returns the detection latencies of the last deaths of every
// child (up to 4096 per child), in no particular order.
func (s *Supervisor) Latencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []time.Duration
	for _, c := range s.children {
		all = append(all, c.lats...)
	}
	return all
}

// Summary is a human summary of the run: per child its state, restarts,
// deaths, hangs, breaker trips and p50/p99 death-detection latency, then
// the totals, then for each refused module (StateRefused) its last stderr
// line.
func (s *Supervisor) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s\n", s.cfg.Instance)
	fmt.Fprintf(&b, "%-12s %-8s %8s %6s %5s %7s %10s %10s  %s\n", "child", "state", "restarts", "deaths", "hangs", "breaker", "detect-p50", "detect-p99", "last exit")
	var all []time.Duration
	var restarts, deaths, hangs, trips int
	for _, c := range s.children {
		l := slices.Clone(c.lats)
		slices.Sort(l)
		all = append(all, l...)
		restarts += c.restarts
		deaths += c.deaths
		hangs += c.hangs
		trips += c.trips
		line := fmt.Sprintf("%-12s %-8s %8d %6d %5d %7d %10s %10s  %s", c.name, c.state, c.restarts, c.deaths, c.hangs, c.trips,
			fmtLat(l, 50), fmtLat(l, 99), c.lastExit)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	slices.Sort(all)
	fmt.Fprintf(&b, "%-12s %-8s %8d %6d %5d %7d %10s %10s\n", "total", "", restarts, deaths, hangs, trips, fmtLat(all, 50), fmtLat(all, 99))
	for _, c := range s.children {
		if c.state == StateRefused {
			why := c.refusal
			if why == "" {
				why = "(no stderr output)"
			}
			fmt.Fprintf(&b, "refused %s: %s\n", c.name, why)
		}
	}
	return b.String()
}

func fmtLat(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	return percentile(sorted, p).Round(time.Microsecond).String()
}
