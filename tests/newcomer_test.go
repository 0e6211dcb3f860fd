package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestBinariesVersionAndHelp: both shipped binaries answer --version with
// one line on stdout, exit 0, naming the layout and control protocol
// versions they speak; `modrunner --help` exits 0 and lists on stdout every
// module it runs (and runs each one it lists far enough to pass the name
// check: an unknown one exits 2 at once), while bad usage exits 2.
func TestBinariesVersionAndHelp(t *testing.T) {
	bin := shippedBinaries(t)
	run := func(name string, args ...string) (string, string, int) {
		c := exec.Command(filepath.Join(bin, name), args...)
		c.Env = append(os.Environ(), "FDP_SHM_DIR="+t.TempDir(), "FDP_INSTANCE=none")
		var out, errb strings.Builder
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return out.String(), errb.String(), code
	}
	versions := fmt.Sprintf("layout %d, control protocol %d", layout.Version, ipc.ControlProtoVersion)
	for _, name := range []string{"engine", "modrunner"} {
		out, _, code := run(name, "--version")
		require.Equal(t, 0, code, name)
		require.True(t, strings.HasPrefix(out, name+" github.com/fdp-engine/fdp "), "%s --version: %q", name, out)
		require.Contains(t, out, versions)
		require.Equal(t, 1, strings.Count(out, "\n"), "%s --version: one line", name)
	}

	out, stderr, code := run("modrunner", "--help")
	require.Equal(t, 0, code, stderr)
	require.Empty(t, stderr)
	for _, m := range []string{"telemetry", "ai", "alert", "python"} {
		require.Regexp(t, "(?m)^  "+m+" ", out, "modrunner --help lists %s", m)
	}
	_, stderr, code = run("modrunner", "nosuch")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `unknown module "nosuch" (telemetry, ai, alert, python)`)
	_, stderr, code = run("modrunner", "--nosuch")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "flag provided but not defined: -nosuch")
	_, _, code = run("modrunner")
	require.Equal(t, 2, code)
}

// TestCompletionListsInstances: the shell completion of the engine binary
// (cobra's __complete, which the completion scripts call) offers the
// instances of the segment directory: a live one with its engine's pid for
// `dump`, `stat` and `--instance`, its segment kinds after `dump INSTANCE`,
// and a killed engine's instance as stale.
func TestCompletionListsInstances(t *testing.T) {
	bin := shippedBinaries(t)
	shmDir := t.TempDir()
	env := append(os.Environ(), "FDP_SHM_DIR="+shmDir)
	complete := func(args ...string) string {
		c := exec.Command(filepath.Join(bin, "engine"), append([]string{"__complete"}, args...)...)
		c.Env = env
		out, err := c.Output()
		require.NoError(t, err)
		return string(out)
	}
	require.NotContains(t, complete("dump", ""), "\t", "no instance yet: no candidate")

	eng := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", "cx", "--entities", "1000")
	eng.Env = env
	require.NoError(t, eng.Start())
	t.Cleanup(func() { _ = eng.Process.Kill(); _ = eng.Wait() })
	live := fmt.Sprintf("cx\tlive, engine pid %d\n", eng.Process.Pid)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(complete("dump", ""), live) {
		require.True(t, time.Now().Before(deadline), "`engine __complete dump ''` never listed %q: %q", live, complete("dump", ""))
		time.Sleep(50 * time.Millisecond)
	}
	require.Contains(t, complete("dump", ""), "fdp.cx.world\tlive\n")
	require.Contains(t, complete("dump", "cx", ""), "world\tlive\n")
	require.Contains(t, complete("dump", "cx", ""), "leases\tlive\n")
	for _, args := range [][]string{{"stat", ""}, {"top", ""}, {"verify", ""}, {"run", "--instance", ""}, {"up", "--instance", ""}, {"gc", "--instance", ""}} {
		require.Contains(t, complete(args...), live, "engine __complete %q", args)
	}
	require.NotContains(t, complete("stat", "cx", ""), "cx\t", "stat takes one instance")

	require.NoError(t, eng.Process.Signal(syscall.SIGKILL))
	_ = eng.Wait()
	require.Contains(t, complete("stat", ""), "cx\tstale (no live engine)\n")
}
