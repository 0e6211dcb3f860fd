package testutil

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A child is the running test binary executed again to play one part of a
// test (a module process, an engine): it runs only the test named in
// ChildOptions.Test, whose body starts with RunChild; RunChild finds the
// part's environment variable set, runs the part and exits the process.
//
//	func TestX(t *testing.T) {
//		testutil.RunChild("FDP_X_CHILD", runXChild) // returns in the parent
//		c := testutil.StartChild(t, testutil.ChildOptions{Test: "TestX", Env: []string{"FDP_X_CHILD=module"}})
//		...
//	}

// RunChild runs part (with the value of the environment variable key) and
// exits with its result when key is set; otherwise it returns at once.
func RunChild(key string, part func(role string) int) {
	if role := os.Getenv(key); role != "" {
		os.Exit(part(role))
	}
}

// ChildOptions describe a child process.
type ChildOptions struct {
	// Test is the test function whose body runs the child's part
	// (-test.run=^Test$).
	Test string
	// Env is added to the test's environment (KEY=VALUE).
	Env []string
	// OnLine, when set, is called for every line of the child's stdout,
	// in order, on the goroutine that reads them.
	OnLine func(line string)
	// Stderr receives the child's stderr (default os.Stderr).
	Stderr io.Writer
	// Drop: lines are not kept (Lines and WaitLine see none), only given
	// to OnLine; for children that print a line per tick for minutes.
	Drop bool
}

// Child is a started child process. Its stdout is read line by line as
// it comes; the process is killed when the test ends.
type Child struct {
	Cmd *exec.Cmd

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed (and replaced) on every new line and at EOF
	eof     bool
	waited  chan struct{} // closed once the process was reaped
	killed  bool
}

// StartChild starts a child (see ChildOptions).
func StartChild(t testing.TB, opt ChildOptions) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+opt.Test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), opt.Env...)
	cmd.Stderr = opt.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("child %s: %v", opt.Test, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("child %s: %v", opt.Test, err)
	}
	c := &Child{Cmd: cmd, changed: make(chan struct{}), waited: make(chan struct{})}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if opt.OnLine != nil {
				opt.OnLine(line)
			}
			if opt.Drop {
				continue
			}
			c.mu.Lock()
			c.lines = append(c.lines, line)
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.eof = true
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}()
	go func() {
		// exec.Cmd.Wait must not run before the pipe is read to its end.
		<-read
		_ = cmd.Wait()
		close(c.waited)
	}()
	t.Cleanup(func() { c.Kill() })
	return c
}

// Pid returns the child's process id.
func (c *Child) Pid() int { return c.Cmd.Process.Pid }

// Lines returns a copy of the lines read so far.
func (c *Child) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// WaitLine waits up to limit for a line (from the first on) for which
// match is true and returns it; false if none came in time or stdout ended
// without one.
func (c *Child) WaitLine(match func(string) bool, limit time.Duration) (string, bool) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	seen := 0
	for {
		c.mu.Lock()
		lines, eof, changed := c.lines[seen:], c.eof, c.changed
		seen = len(c.lines)
		c.mu.Unlock()
		for _, l := range lines {
			if match(l) {
				return l, true
			}
		}
		if eof {
			return "", false
		}
		select {
		case <-changed:
		case <-timer.C:
			return "", false
		}
	}
}

// Kill sends SIGKILL (unless the process was reaped already) and waits
// until it is reaped. It reports whether this call killed a running
// process: false when the process had exited by itself (or was killed
// before).
func (c *Child) Kill() bool {
	c.mu.Lock()
	first := !c.killed
	c.killed = true
	c.mu.Unlock()
	select {
	case <-c.waited:
		return false
	default:
	}
	err := c.Cmd.Process.Signal(syscall.SIGKILL)
	<-c.waited
	if !first || errors.Is(err, os.ErrProcessDone) {
		return false
	}
	ws, ok := c.Cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// Wait waits up to limit for the process to end by itself and returns its
// state (nil if it is still running).
func (c *Child) Wait(limit time.Duration) *os.ProcessState {
	select {
	case <-c.waited:
		return c.Cmd.ProcessState
	case <-time.After(limit):
		return nil
	}
}
