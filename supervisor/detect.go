package supervisor

import "time"

// DetectBounds are the upper bounds of the buckets of a child's
// death-detection latency histogram (ChildStatus.Detect): from the
// supervisor's SIGKILL (a hang kill) to the death hook call. An external
// death has no latency: its instant is not observable. A death is seen
// within milliseconds (docs/PERFORMANCE.md); the buckets reach 10 s for a
// supervisor that is itself starved.
var DetectBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// LatencyHistogram counts detection latencies over the whole run (the
// samples behind Summary's percentiles are only the last
// maxLatencySamples).
type LatencyHistogram struct {
	// Buckets[i] counts the latencies d with DetectBounds[i-1] < d <=
	// DetectBounds[i]; the last one those beyond every bound.
	Buckets [len(DetectBounds) + 1]uint64
	Count   uint64
	Sum     time.Duration
}

// Record adds one latency.
func (h *LatencyHistogram) Record(d time.Duration) {
	i := 0
	for i < len(DetectBounds) && d > DetectBounds[i] {
		i++
	}
	h.Buckets[i]++
	h.Count++
	h.Sum += d
}
