package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// runMain runs Main(testWorld()) with args in a child process (through
// TestMainExitCode) and returns stdout, stderr and the exit status.
// $FDP_TEST_WORLD=noschema and =nosim leave the World incomplete.
func runMain(t *testing.T, args ...string) (string, string, int) {
	return testutil.RunMain(t, "TestMainExitCode", args...)
}

// TestMainExitCode runs Main in child processes: a corrupt segment, a flag
// the engine cannot run with (the world's own included) and an incomplete
// World give exit status 1 and one error line on stderr, and create
// nothing; a short run prints the status line and the summary, each with
// the world's own figures.
func TestMainExitCode(t *testing.T) {
	testutil.MainChild("testengine", func() {
		w := testWorld()
		switch os.Getenv("FDP_TEST_WORLD") {
		case "noschema":
			w.Schema = nil
		case "nosim":
			w.Simulation = nil
		}
		Main(w)
	})
	dir := useTempShm(t)
	tmp := t.TempDir()
	good := fixture.World(fixture.Default)
	bad := append([]byte(nil), good...)
	bad[layout.OffKind] = 9 // foreign kind, checksum now wrong too
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "bad"), bad, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "good"), good, 0o600))
	_, stderr, code := runMain(t, "dump", filepath.Join(tmp, "bad"))
	require.Equal(t, 1, code)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	require.Contains(t, stderr, "fdp/inspect: fdp/layout: header checksum mismatch")

	// Flags the engine cannot run with: one line, exit status 1, nothing
	// created.
	for _, args := range [][]string{{"--entities", "-1"}, {"--start", "-5"}, {"--rate", "0"}, {"--duration", "-1s"}} {
		_, stderr, code = runMain(t, append([]string{"run", "--instance", "neverstarted"}, args...)...)
		require.Equal(t, 1, code, "%v: %s", args, stderr)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "%v: one line: %q", args, stderr)
		require.Contains(t, stderr, args[0], "%v", args)
	}
	// A bad --metrics is refused before the world and its simulation are
	// built (the test world logs when it is: one line, nothing created).
	_, stderr, code = runMain(t, "run", "--instance", "neverstarted", "--metrics", "localhost")
	require.Equal(t, 1, code, stderr)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	require.Contains(t, stderr, "want host:port")
	for _, missing := range []string{"noschema", "nosim"} {
		t.Setenv("FDP_TEST_WORLD", missing)
		for _, args := range [][]string{{"run", "--instance", "neverstarted"}, {"up", "--instance", "neverstarted", "--duration", "1s"}} {
			_, stderr, code = runMain(t, args...)
			require.Equal(t, 1, code, "%v: %s", args, stderr)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "%v: one line: %q", args, stderr)
			require.Contains(t, stderr, "cli.World: ")
		}
	}
	t.Setenv("FDP_TEST_WORLD", "")
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, left, "no segment created")

	stdout, stderr, code := runMain(t, "dump", "--json", filepath.Join(tmp, "good"))
	require.Equal(t, 0, code, stderr)
	var r inspect.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &r))
	require.Equal(t, "world", r.Header.Kind)

	// A short run: the world's status fields end the status line, its
	// summary lines follow the world line, and both count the same steps
	// the engine ran (one per frame).
	stdout, stderr, code = runMain(t, "run", "--instance", "t"+strconv.Itoa(os.Getpid()), "--duration", "500ms", "--status", "100ms")
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `(?m)^status: frame \d+ .*  steps \d+$`, stderr)
	frames := regexp.MustCompile(`(?m)^engine frames (\d+) in `).FindStringSubmatch(stdout)
	require.NotNil(t, frames, stdout)
	require.Regexp(t, `(?m)^world: 10 entities alive; [^\n]*\ntest world: `+frames[1]+` steps$`, stdout)
}

// TestMainExitsOnSuccess: Main exits with status 0 when the command
// succeeds, as documented, so the code after it in a program's main never
// runs (the child prints "unreachable" and exits 3 if it does).
func TestMainExitsOnSuccess(t *testing.T) {
	testutil.MainChild("testengine", func() {
		Main(testWorld())
		fmt.Println("unreachable")
		os.Exit(3)
	})
	useTempShm(t)
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good")
	require.NoError(t, os.WriteFile(good, fixture.World(fixture.Default), 0o600))
	for _, args := range [][]string{{"ls"}, {"dump", good}, {"--version"},
		{"run", "--instance", "u" + strconv.Itoa(os.Getpid()), "--duration", "200ms"}} {
		stdout, stderr, code := testutil.RunMain(t, "TestMainExitsOnSuccess", args...)
		require.Equal(t, 0, code, "%v: %s", args, stderr)
		require.NotContains(t, stdout, "unreachable", "%v", args)
	}
}

// TestUpEngineNeverPublished: up whose engine dies at once every time (a
// real process, /bin/false) exits 1 with the reason after its summary; it
// exited 0 before, as if the run had worked.
func TestUpEngineNeverPublished(t *testing.T) {
	useTempShm(t)
	cfg := filepath.Join(t.TempDir(), "up.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`instance: neverpub
engine: {command: [/bin/false], restart: true}
restart: {initial_backoff: 10ms, max_backoff: 50ms, multiplier: 2, reset_after: 5s}
breaker: {max_failures: 1000, window: 30s}
`), 0o600))
	stdout, stderr, code := runMain(t, "up", "--config", cfg, "--duration", "3s") // deaths seen even on a loaded machine
	require.Equal(t, 1, code, "%s\n%s", stdout, stderr)
	require.Contains(t, stdout, "== supervisor summary ==")
	require.Regexp(t, `up: the engine never published a frame: it died \d+ times \(last: [^)]+\)`, stderr)
}
