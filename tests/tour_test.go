package tests

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// tourStep is one `$` line of the README's tour and what the README shows
// under it.
type tourStep struct {
	line   int      // in README.md
	cmd    string   // the shell text after "$ "
	expect []string // lines it prints (patterns: see tourPattern); "…" alone: any lines
	status int      // from "[exit status N]", else 0
}

// readmeTour returns the `$` lines of the ```console blocks of the README's
// section "A 5-minute tour", in order, with the output and exit status the
// README shows for each.
func readmeTour(t *testing.T) []tourStep {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	var steps []tourStep
	in, inBlock := false, false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "## "):
			in = l == "## A 5-minute tour"
		case !in:
		case l == "```console":
			inBlock = true
		case inBlock && l == "```":
			inBlock = false
		case inBlock && strings.HasPrefix(l, "$ "):
			steps = append(steps, tourStep{line: i + 1, cmd: strings.TrimPrefix(l, "$ ")})
		case inBlock && len(steps) == 0:
			t.Fatalf("README.md:%d: output before the first $ line of the tour", i+1)
		case inBlock && strings.HasPrefix(l, "[exit status "):
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(l, "[exit status "), "]"))
			require.NoError(t, err, "README.md:%d: %q", i+1, l)
			steps[len(steps)-1].status = n
		case inBlock:
			steps[len(steps)-1].expect = append(steps[len(steps)-1].expect, l)
		}
	}
	return steps
}

var tourToken = regexp.MustCompile(`\d+(?:\.\d+)?|\s+|[^\d\s…]+|…`)

// tourPattern turns a line of output shown in the README into a regular
// expression of a whole line: a number stands for any number, "…" for any
// text, a run of spaces for any run of blanks (columns widen with their
// figures).
func tourPattern(shown string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, tok := range tourToken.FindAllString(strings.TrimRight(shown, " "), -1) {
		switch c := tok[0]; {
		case tok == "…":
			b.WriteString(".*")
		case c >= '0' && c <= '9':
			b.WriteString(`\d+(?:\.\d+)?`)
		case c == ' ' || c == '\t':
			b.WriteString(`\s+`)
		default:
			b.WriteString(regexp.QuoteMeta(tok))
		}
	}
	b.WriteString(`\s*$`)
	return regexp.MustCompile(b.String())
}

// tourMatch reports whether out shows the expected lines, in order (other
// lines may come between them), or the first expected line it lacks.
func tourMatch(expect []string, out string) (missing string, ok bool) {
	got := strings.Split(out, "\n")
	j := 0
	for _, e := range expect {
		if e == "…" {
			continue
		}
		re := tourPattern(e)
		for j < len(got) && !re.MatchString(got[j]) {
			j++
		}
		if j == len(got) {
			return e, false
		}
		j++
	}
	return "", true
}

// TestTourPattern: the matcher of the tour test can fail.
func TestTourPattern(t *testing.T) {
	for _, c := range []struct {
		shown, got string
		ok         bool
	}{
		{"fdp.demo.mod.0   demo      module  1056768    1056768    24684  live   -", "fdp.demo.mod.3   demo  module  1056768  1056768  99  live  -", true},
		{"fdp.demo.mod.0   demo      module  1056768    1056768    24684  live   -", "fdp.demo.mod.3   demo  module  1056768  1056768  99  stale  -", false},
		{"demo  frame 199  59.7 fps  last publish … ago  skipped 0 (+0)  …", "demo  frame 3  60.0 fps  last publish 1.2ms ago  skipped 12 (+1)  aborted 0", true},
		{"demo  frame 199  59.7 fps  last publish … ago  skipped 0 (+0)  …", "demo  nothing published yet", false},
		{"Error: …nosuch…", "Error: fdp/shm: open /x/fdp.nosuch.world: no such file", true},
		{"2", "12", true},
		{"2", "x", false},
	} {
		_, ok := tourMatch([]string{c.shown}, c.got)
		require.Equal(t, c.ok, ok, "%q against %q", c.shown, c.got)
	}
	_, ok := tourMatch([]string{"b", "a"}, "a\nb")
	require.False(t, ok, "expected lines are matched in order")
}

// TestReadmeTour runs the README's tour as written: every `$` line, in
// order, in one bash (its background jobs, `$!` and `%1` work as in a
// terminal), in a temporary directory with the shipped binaries in ./bin and
// on PATH and a temporary FDP_SHM_DIR. Each line must exit with the status
// the README shows and print the lines it shows; a line that shows output
// is run again until it does, for up to 20 s (the README says so: the
// engine and modules take a moment to start). `make build` is the one line
// not run: the test builds the binaries itself, as it does.
func TestReadmeTour(t *testing.T) {
	steps := readmeTour(t)
	require.GreaterOrEqual(t, len(steps), 10, "the README's tour has fewer than 10 commands: parsed wrongly?")
	built := shippedBinaries(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	for _, name := range []string{"engine", "modrunner"} {
		// A link, not a symlink: the supervisor finds the modules next to
		// its own executable (/proc/self/exe), which is to be ./bin, as the
		// README's pgrep line shows.
		if err := os.Link(filepath.Join(built, name), filepath.Join(bin, name)); err != nil {
			copyFile(t, filepath.Join(built, name), filepath.Join(bin, name))
		}
	}
	shmDir := t.TempDir()

	sh := exec.Command("bash")
	sh.Dir = dir
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FDP_") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	sh.Env = append(env, "FDP_SHM_DIR="+shmDir, "PATH="+bin+":"+os.Getenv("PATH"))
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its background jobs too: killed as a group at the end
	stdin, err := sh.StdinPipe()
	require.NoError(t, err)
	var shOut syncBuf
	sh.Stdout, sh.Stderr = &shOut, &shOut
	require.NoError(t, sh.Start())
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = syscall.Kill(-sh.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = sh.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})

	attempt := 0
	run := func(cmd string) (string, int) {
		attempt++
		out := filepath.Join(dir, fmt.Sprintf(".tour.%d.out", attempt))
		rc := filepath.Join(dir, fmt.Sprintf(".tour.%d.rc", attempt))
		_, err := io.WriteString(stdin, fmt.Sprintf("{ %s\n} > %s 2>&1; echo $? > %s.tmp && mv %s.tmp %s\n", cmd, out, rc, rc, rc))
		require.NoError(t, err)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if b, err := os.ReadFile(rc); err == nil {
				code, err := strconv.Atoi(strings.TrimSpace(string(b)))
				require.NoError(t, err)
				o, err := os.ReadFile(out)
				require.NoError(t, err)
				return string(o), code
			}
			require.True(t, time.Now().Before(deadline), "%q did not end within 30 s; the shell says:\n%s", cmd, shOut.String())
			time.Sleep(20 * time.Millisecond) // polling for the step's end
		}
	}
	for _, s := range steps {
		if s.cmd == "make build" {
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, code := run(s.cmd)
			missing, ok := tourMatch(s.expect, out)
			if ok && code == s.status {
				break
			}
			if len(s.expect) == 0 || time.Now().After(deadline) {
				t.Fatalf("README.md:%d: $ %s\nexit status %d (README: %d); README line not shown: %q\n--- it printed:\n%s",
					s.line, s.cmd, code, s.status, missing, out)
			}
			time.Sleep(200 * time.Millisecond) // as a reader would: look again a moment later
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o755))
}

// TestTourVersionsExact: the tour's matcher lets any number stand for a
// number, but the versions a binary speaks are facts a reader compares
// with: every "layout N, control protocol M" of the README is the build's.
func TestTourVersionsExact(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	re := regexp.MustCompile(`layout (\d+), control protocol (\d+)`)
	found := re.FindAllStringSubmatch(string(b), -1)
	require.NotEmpty(t, found, "the tour shows --version")
	want := []string{strconv.Itoa(int(layout.Version)), strconv.Itoa(int(ipc.ControlProtoVersion))}
	for _, m := range found {
		require.Equal(t, want, m[1:], "README: %q (layout.Version, ipc.ControlProtoVersion)", m[0])
	}
}
