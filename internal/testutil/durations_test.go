package testutil

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOverPreciseDurations: the durations found, and the ones that are not
// durations or are precise enough.
func TestOverPreciseDurations(t *testing.T) {
	s := "publish p50 524.288µs p99 2.1ms frame 10.002s after 2m3.45s max 1.200s lag 0.000524s " +
		"shm 12.5MiB version v1.2345s 60.9 fps 1m1.2s 8.388608ms 1234ns 1230ns"
	require.Equal(t, []string{"524.288µs", "10.002s", "2m3.45s", "8.388608ms", "1234ns"}, OverPreciseDurations(s))
	require.Empty(t, OverPreciseDurations("status: frame 61  60.9 fps  publish p50 524µs p99 2.1ms"))
}
