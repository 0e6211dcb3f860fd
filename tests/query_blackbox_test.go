package tests

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAlertChangedBlackBox uses only the shipped binaries and documented
// behaviour: `engine run` with a demo world of 5,000 entities (5 chunks of
// 1,024) and `modrunner alert` ticking every frame (FDP_EVERY=1). The alert
// logs, every 10 runs, the chunks whose Health changed since its previous
// run, summed (health_chunks_changed): world.Changed counts every chunk on
// the module's first tick and, without churn (nothing writes Health after
// the spawn), none on the later ones: 5 after 10 and after 20 runs. With
// churn (deaths and spawns write Health every frame) the sum grows.
func TestAlertChangedBlackBox(t *testing.T) {
	bin := shippedBinaries(t)
	run := func(churn int) (first, second int) {
		inst := uniqueInstance(t, "qa")
		eng := exec.Command(filepath.Join(bin, "engine"), "run", "--instance", inst, "--entities", "5000",
			"--churn", strconv.Itoa(churn), "--rate", "200", "--status", "0")
		require.NoError(t, eng.Start())
		t.Cleanup(func() { _ = eng.Process.Kill(); _ = eng.Wait() })
		var stderr syncBuf
		alert := exec.Command(filepath.Join(bin, "modrunner"), "alert")
		alert.Env = append(cleanEnv(), "FDP_INSTANCE="+inst, "FDP_MODULE=alert", "FDP_EVERY=1")
		alert.Stderr = &stderr
		require.NoError(t, alert.Start())
		t.Cleanup(func() { _ = alert.Process.Kill(); _ = alert.Wait() })
		// `health_chunks_changed=N` in the text log, `"health_chunks_changed":N` in JSON.
		re := regexp.MustCompile(`runs"?[=:](10|20)\b.*health_chunks_changed"?[=:](\d+)`)
		var sums []int
		waitFor(t, "the alert's lines at 10 and 20 runs", 30*time.Second, func() bool {
			sums = sums[:0]
			for _, m := range re.FindAllStringSubmatch(stderr.String(), -1) {
				n, _ := strconv.Atoi(m[2])
				sums = append(sums, n)
			}
			return len(sums) >= 2
		})
		return sums[0], sums[1]
	}
	first, second := run(0)
	require.Equal(t, 5, first, "every chunk on the first run, none after: nothing writes Health")
	require.Equal(t, 5, second)
	first, second = run(6000) // 30 deaths and spawns a frame
	require.Greater(t, first, 5)
	require.Greater(t, second, first)
}
