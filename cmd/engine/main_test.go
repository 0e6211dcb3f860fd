package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/internal/testutil"
	"github.com/stretchr/testify/require"
)

// TestEngineMain runs the demo's main() in child processes: its own flag
// (--churn) is refused in one line before anything is created, like the
// flags of package cli, and a short run prints the summary with the demo's
// own line, whose churn counts follow --churn (none without churn).
func TestEngineMain(t *testing.T) {
	testutil.MainChild("engine", main)
	dir := t.TempDir()
	t.Setenv("FDP_SHM_DIR", dir)
	run := func(args ...string) (string, string, int) { return testutil.RunMain(t, "TestEngineMain", args...) }

	_, stderr, code := run("run", "--instance", "neverstarted", "--churn", "-5")
	require.Equal(t, 1, code, stderr)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	require.Contains(t, stderr, "--churn -5")
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, left, "no segment created")

	churned := regexp.MustCompile(`(?m)^simulation: (\d+) entities spawned and (\d+) died \(churn\)$`)
	for _, churn := range []int{0, 3000} {
		stdout, stderr, code := run("run", "--instance", "t"+strconv.Itoa(os.Getpid()), "--entities", "500",
			"--churn", strconv.Itoa(churn), "--duration", "300ms", "--status", "0")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "== FDP engine summary ==")
		require.Contains(t, stdout, "world: 500 entities alive", "the churn kills one for each it spawns")
		m := churned.FindStringSubmatch(stdout)
		require.NotNil(t, m, stdout)
		spawned, _ := strconv.Atoi(m[1])
		if churn == 0 {
			require.Equal(t, "0", m[1])
			continue
		}
		require.Positive(t, spawned, "3000/s for 300 ms")
		require.Equal(t, m[1], m[2])
	}
	segs, err := filepath.Glob(filepath.Join(dir, "fdp.*"))
	require.NoError(t, err)
	require.Empty(t, segs, "a stopped engine removes its segments")
}
