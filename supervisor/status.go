package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
)

// pump logs every line of one output stream of a child as one record of
// the supervisor's (attributes child and stream, then the child's own:
// childlog.go), so that lines of different children never interleave and a
// child's record is never nested in one of the supervisor's. Blank lines
// are dropped; lines longer than 64 KiB are logged in pieces. It keeps the
// last non-blank stderr line in out (as childRecord.text).
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
		if text := strings.TrimRight(string(line), "\r\n"); strings.TrimSpace(text) != "" {
			rec := parseChildLine(text)
			log.LogAttrs(context.Background(), rec.level, rec.msg, rec.attrs...)
			if stream == "stderr" {
				last := rec.text()
				out.lastErr.Store(&last)
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

// summaryRow is one child's line of the summary.
type summaryRow struct {
	name, lastExit, refusal        string
	state                          State
	restarts, deaths, hangs, trips int
	lats                           []time.Duration // sorted
	total                          bool            // the totals' row
}

// summaryRows returns the summary's rows, the children's then the totals'.
// Called with mu held.
func (s *Supervisor) summaryRows() []summaryRow {
	var rows []summaryRow
	total := summaryRow{name: "total", total: true}
	for _, c := range s.children {
		r := summaryRow{name: c.name, state: c.state, restarts: c.restarts, deaths: c.deaths, hangs: c.hangs, trips: c.trips,
			lastExit: c.lastExit, lats: slices.Clone(c.lats)}
		if c.state == StateRefused {
			r.refusal = c.refusal
			if r.refusal == "" {
				r.refusal = "(no stderr output)"
			}
		}
		slices.Sort(r.lats)
		total.lats = append(total.lats, r.lats...)
		total.restarts += c.restarts
		total.deaths += c.deaths
		total.hangs += c.hangs
		total.trips += c.trips
		rows = append(rows, r)
	}
	slices.Sort(total.lats)
	return append(rows, total)
}

// Summary is a human summary of the run: per child its state, restarts,
// deaths, hangs, breaker trips and p50/p99 death-detection latency, then
// the totals, then for each refused module (StateRefused) its last stderr
// line. LogSummary logs the same as records.
func (s *Supervisor) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "instance %s\n", s.cfg.Instance)
	fmt.Fprintf(&b, "%-12s %-8s %8s %6s %5s %7s %10s %10s  %s\n", "child", "state", "restarts", "deaths", "hangs", "breaker", "detect-p50", "detect-p99", "last exit")
	rows := s.summaryRows()
	for _, r := range rows {
		line := fmt.Sprintf("%-12s %-8s %8d %6d %5d %7d %10s %10s  %s", r.name, r.state, r.restarts, r.deaths, r.hangs, r.trips,
			fmtLat(r.lats, 50), fmtLat(r.lats, 99), r.lastExit)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	for _, r := range rows {
		if r.state == StateRefused {
			fmt.Fprintf(&b, "refused %s: %s\n", r.name, r.refusal)
		}
	}
	return b.String()
}

// LogSummary logs Summary's figures to log as records, for a log read by
// programs: one "child summary" record per child (child, state, restarts,
// deaths, hangs, breaker_trips, detect_p50 and detect_p99 when it died,
// last_exit, refusal when refused), then one "supervisor summary" record
// with the instance and the totals.
func (s *Supervisor) LogSummary(log *slog.Logger) {
	s.mu.Lock()
	rows := s.summaryRows()
	s.mu.Unlock()
	for _, r := range rows {
		attrs := []any{"restarts", r.restarts, "deaths", r.deaths, "hangs", r.hangs, "breaker_trips", r.trips}
		if len(r.lats) > 0 {
			attrs = append(attrs, "detect_p50", logs.Round3(percentile(r.lats, 50)), "detect_p99", logs.Round3(percentile(r.lats, 99)))
		}
		if r.total {
			log.Info("supervisor summary", append([]any{"instance", s.cfg.Instance}, attrs...)...)
			continue
		}
		attrs = append([]any{"child", r.name, "state", r.state.String()}, attrs...)
		if r.lastExit != "" {
			attrs = append(attrs, "last_exit", r.lastExit)
		}
		if r.refusal != "" {
			attrs = append(attrs, "refusal", r.refusal)
		}
		log.Info("child summary", attrs...)
	}
}

func fmtLat(sorted []time.Duration, p float64) string {
	if len(sorted) == 0 {
		return "-"
	}
	return logs.Round3(percentile(sorted, p)).String()
}
