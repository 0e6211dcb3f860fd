package tests

// The built-in modules take their tier and period from the supervisor's
// environment (outside tester, F3): `engine up` passes a module's config
// tier and every as $FDP_TIER and $FDP_EVERY, and a config saying
// {command: [modrunner, telemetry], tier: slow, every: 5} ran fast every 1.
// An invalid value is a permanent refusal, not ignored.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// statModules runs `engine stat --json --count 1` and returns its modules.
func statModules(t *testing.T, bin, inst string) []inspect.ModuleStatLine {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "engine"), "stat", "--json", "--count", "1", "--interval", "20ms", inst).Output()
	require.NoError(t, err, "engine stat: %s", out)
	var l inspect.StatLine
	require.NoError(t, json.Unmarshal(out, &l), "%s", out)
	return l.Modules
}

// cleanEnv is the test's environment without the variables a supervisor
// sets for a module (each case sets its own).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "FDP_MODULE", "FDP_GROUP", "FDP_TIER", "FDP_EVERY", "FDP_INSTANCE":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// TestModrunnerTierEveryFromEnv: `engine run` and real modrunner
// processes. telemetry (its own spec: fast every 1) with FDP_TIER=slow
// FDP_EVERY=5 and ai (slow every 6) with FDP_TIER=fast FDP_EVERY=3 join as
// the environment says, as `engine dump --json` of their segments shows
// (tier 0 fast, 1 slow; frequency: the period); alert without either
// keeps its own (slow, every 0: it runs when woken). modrunner with FDP_TIER=bogus,
// FDP_EVERY=-3, 0 or junk exits 78 (layout.ExitRefused) at once with one
// line naming the variable, and never joins.
func TestModrunnerTierEveryFromEnv(t *testing.T) {
	bin := shippedBinaries(t)
	inst := uniqueInstance(t, "me")
	eng := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "1000", "--rate", "100",
		"--status", "0")
	require.NoError(t, eng.Start())
	t.Cleanup(func() {
		_ = eng.Process.Kill()
		_ = eng.Wait()
	})
	waitFor(t, "the engine's first frame", 20*time.Second, func() bool { return latestFrameOf(inst) >= 1 })

	modrunner := func(t *testing.T, kind string, env ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, "modrunner"), kind)
		cmd.Env = append(cleanEnv(), append([]string{"FDP_INSTANCE=" + inst}, env...)...)
		return cmd
	}
	// The refusals first: none of them may reach the engine.
	for _, bad := range []string{"FDP_TIER=bogus", "FDP_EVERY=-3", "FDP_EVERY=0", "FDP_EVERY=junk"} {
		t.Run(bad, func(t *testing.T) {
			cmd := modrunner(t, "telemetry", "FDP_MODULE=bad", bad)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			require.NoError(t, cmd.Start())
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("modrunner with %s still running; stderr:\n%s", bad, stderr.String())
			}
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "modrunner with %s: %v; stderr:\n%s", bad, err, stderr.String())
			require.Equal(t, layout.ExitRefused, ee.ExitCode(), "stderr:\n%s", stderr.String())
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			require.Len(t, lines, 1, "one line: %q", lines)
			require.Contains(t, lines[0], "module refused")
			name, _, _ := strings.Cut(bad, "=")
			require.Contains(t, lines[0], name, "the line names the variable")
		})
	}

	type want struct {
		kind string
		env  []string
		tier uint32 // LAYOUT: 0 fast, 1 slow
		freq uint32
	}
	mods := map[string]want{
		"telS": {"telemetry", []string{"FDP_TIER=slow", "FDP_EVERY=5"}, 1, 5},
		"ai-7": {"ai", []string{"FDP_TIER=fast", "FDP_EVERY=3"}, 0, 3},
		"alrt": {"alert", nil, 1, 0},
	}
	for name, w := range mods {
		cmd := modrunner(t, w.kind, append([]string{"FDP_MODULE=" + name}, w.env...)...)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	var seen []inspect.ModuleStatLine
	waitFor(t, "the three modules joined", 20*time.Second, func() bool {
		seen = statModules(t, bin, inst)
		return len(seen) >= len(mods)
	})
	require.Len(t, seen, len(mods), "the refused modules never joined: %+v", seen)
	for _, s := range seen {
		w, ok := mods[s.Name]
		require.True(t, ok, "module %q", s.Name)
		out, err := exec.Command(filepath.Join(bin, "engine"), "dump", "--json", inst, fmt.Sprintf("mod.%d", s.Slot)).Output()
		require.NoError(t, err, "%s", out)
		var r inspect.Report
		require.NoError(t, json.Unmarshal(out, &r), "%s", out)
		require.NotNil(t, r.Module, "%s", out)
		require.Equal(t, s.Name, r.Module.Name)
		require.Equal(t, w.tier, r.Module.Tier, "%s: tier (0 fast, 1 slow)", s.Name)
		require.Equal(t, w.freq, r.Module.Frequency, "%s: every", s.Name)
	}
}
