package tests

// A scripted terminal for tests of full-screen programs (engine top): a
// detached tmux session on a private server, read with capture-pane.

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// screen is what a capture of the pane shows, parsed.
type screen struct {
	text   string
	at     time.Time // when the capture started
	end    time.Time // when it ended
	pid    uint32    // engine pid
	up     time.Duration
	frame  uint64
	fps    float64
	age    time.Duration    // since the last publish
	skip   [2]uint64        // skipped, and added in the interval
	times  [4]time.Duration // publish p50, p99, frame p50, p99
	last   [2]time.Duration // the last publish's and frame's durations
	held   float64          // bytes, to three significant digits
	rows   map[string][]string
	hasFPS bool
}

var (
	reEngine = regexp.MustCompile(`engine pid (\d+) live  up (\S+)`)
	reFrame  = regexp.MustCompile(`frame (\d+)  fps ([0-9.]+)  last publish (\S+) ago  skipped (\d+) \(\+(\d+)\)`)
	reTimes  = regexp.MustCompile(`publish time p50 (\S+) p99 (\S+) \(last (\S+)\)   frame time p50 (\S+) p99 (\S+) \(last (\S+)\)`)
	reHeld   = regexp.MustCompile(`memory held ([0-9.]+) (B|KiB|MiB|GiB)`)
)

// tmuxTerm is a detached tmux session on a private server socket.
type tmuxTerm struct {
	t    *testing.T
	bin  string
	sock string
}

func (m *tmuxTerm) run(args ...string) string {
	m.t.Helper()
	cmd := exec.Command(m.bin, append([]string{"-S", m.sock, "-f", "/dev/null"}, args...)...)
	if os.Getenv("TERM") == "" {
		cmd.Env = append(os.Environ(), "TERM=xterm")
	}
	out, err := cmd.CombinedOutput()
	require.NoError(m.t, err, "tmux %v: %s", args, out)
	return string(out)
}

// target names session sess exactly (a bare name may resolve to a window of
// another session).
func target(sess string) string { return "=" + sess + ":" }

// start runs script in a new detached session of 120x40. The pane stays
// after the script ends (remain-on-exit), so that what the shell prints
// after top shows the terminal top gave back.
func (m *tmuxTerm) start(sess, script string) {
	m.t.Helper()
	m.run("new-session", "-d", "-s", sess, "-x", "120", "-y", "40", script, ";", "set-option", "-t", target(sess), "remain-on-exit", "on")
}

// pane returns a pane format of session sess (tmux display -p).
func (m *tmuxTerm) pane(sess, format string) string {
	m.t.Helper()
	return strings.TrimSpace(m.run("display", "-p", "-t", target(sess), format))
}

// exited waits for the script of sess to end and checks that top exited 0
// and gave the terminal back: the alternate screen left, the shell's stty
// -a after it shows cooked mode with echo, and none of the view on the
// normal screen (nor in its history) unless plain is set (--once prints
// its frame there).
func (m *tmuxTerm) exited(sess string, plain bool) string {
	m.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.pane(sess, "#{pane_dead}") != "1" {
		require.True(m.t, time.Now().Before(deadline), "top in %s did not exit", sess)
		time.Sleep(20 * time.Millisecond) // polling the pane, bounded
	}
	require.Equal(m.t, "0", m.pane(sess, "#{alternate_on}"), "%s: the alternate screen was left", sess)
	out := m.run("capture-pane", "-p", "-t", target(sess), "-S", "-100") // with what scrolled off
	i := strings.Index(out, "TOP-EXIT=0")
	require.GreaterOrEqual(m.t, i, 0, "%s: top exited 0:\n%s", sess, out)
	stty := " " + strings.Join(strings.Fields(out[i:]), " ") + " "
	require.Contains(m.t, stty, " icanon ", "%s: cooked mode restored:\n%s", sess, out)
	require.Contains(m.t, stty, " echo ", "%s: echo restored:\n%s", sess, out)
	if !plain {
		require.NotContains(m.t, out, "FDP top", "%s: the view was on the alternate screen only", sess)
	}
	return out
}

func (m *tmuxTerm) capture(sess string) screen {
	m.t.Helper()
	s := screen{at: time.Now(), rows: map[string][]string{}}
	s.text = m.run("capture-pane", "-p", "-t", target(sess))
	s.end = time.Now()
	if g := reEngine.FindStringSubmatch(s.text); g != nil {
		pid, _ := strconv.ParseUint(g[1], 10, 32)
		s.pid = uint32(pid)
		s.up, _ = time.ParseDuration(g[2])
	}
	if g := reFrame.FindStringSubmatch(s.text); g != nil {
		s.frame, _ = strconv.ParseUint(g[1], 10, 64)
		s.fps, _ = strconv.ParseFloat(g[2], 64)
		s.age, _ = time.ParseDuration(g[3])
		s.skip[0], _ = strconv.ParseUint(g[4], 10, 64)
		s.skip[1], _ = strconv.ParseUint(g[5], 10, 64)
		s.hasFPS = true
	}
	if g := reTimes.FindStringSubmatch(s.text); g != nil {
		for i, j := range []int{1, 2, 4, 5} {
			s.times[i], _ = time.ParseDuration(g[j]) // "-": 0
		}
		s.last[0], _ = time.ParseDuration(g[3])
		s.last[1], _ = time.ParseDuration(g[6])
	}
	if g := reHeld.FindStringSubmatch(s.text); g != nil {
		v, _ := strconv.ParseFloat(g[1], 64)
		s.held = v * map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[g[2]]
	}
	for _, l := range strings.Split(s.text, "\n") {
		if f := strings.Fields(l); len(f) == 12 && f[0] != "SLOT" {
			s.rows[f[1]] = f
		}
	}
	return s
}

// waitScreen polls the pane until cond holds for a capture.
func (m *tmuxTerm) waitScreen(sess, what string, limit time.Duration, cond func(screen) bool) screen {
	m.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		s := m.capture(sess)
		if cond(s) {
			return s
		}
		require.True(m.t, time.Now().Before(deadline), "timed out waiting for %s; screen:\n%s", what, s.text)
		time.Sleep(50 * time.Millisecond) // polling the terminal, bounded
	}
}
