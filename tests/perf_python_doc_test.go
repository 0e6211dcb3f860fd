package tests

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPerformancePythonRatio: docs/PERFORMANCE.md's "pure-Python figure is
// A–B× numpy's" is the range its own table gives: A = the fastest pure
// run over the slowest mapped one, B = the slowest over the fastest
// (rounded down, within 1).
func TestPerformancePythonRatio(t *testing.T) {
	b, err := os.ReadFile("../docs/PERFORMANCE.md")
	require.NoError(t, err)
	s := string(b)
	num := regexp.MustCompile(`(?m)^\| numpy, 100K Positions \| (\d+)–(\d+) µs \|`).FindStringSubmatch(s)
	require.NotNil(t, num, "the numpy row")
	pure := regexp.MustCompile(`(?m)^\| pure Python [^|]*\| (\d+)–(\d+) ms `).FindStringSubmatch(s)
	require.NotNil(t, pure, "the pure Python row")
	claim := regexp.MustCompile(`pure-Python figure is (\d+)–(\d+)× numpy's`).FindStringSubmatch(s)
	require.NotNil(t, claim, "the ratio")
	f := func(x string) float64 { v, err := strconv.ParseFloat(x, 64); require.NoError(t, err); return v }
	lo := f(pure[1]) * 1000 / f(num[2])
	hi := f(pure[2]) * 1000 / f(num[1])
	require.InDelta(t, lo, f(claim[1]), 1, "the least ratio")
	require.InDelta(t, hi, f(claim[2]), 1, "the greatest ratio")
}
