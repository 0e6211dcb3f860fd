package logs

import (
	"math"
	"time"
)

// Round3 rounds d to three significant digits (halves away from zero):
// 524.288µs to 524µs, 2.097152ms to 2.1ms, 999.5µs to 1ms. It is the one
// rounding of durations shown to people: the engine's percentiles come
// from histograms within 12.5% (host.Histogram), the statistics blocks'
// from power-of-two buckets, and a wall-clock reading of a latency is no
// more precise than a few microseconds of scheduling; more digits would be
// noise. d.String() then shows it in a fitting unit with at most three
// significant digits (trailing zeros dropped: "1.2s").
func Round3(d time.Duration) time.Duration {
	if d == math.MinInt64 {
		d++ // its magnitude is not a Duration; one ns changes nothing shown
	}
	mag := d
	if mag < 0 {
		mag = -mag
	}
	unit := time.Duration(1)
	for mag/unit >= 1000 {
		unit *= 10
	}
	r := d.Round(unit)
	if r%unit != 0 { // Round saturated at the largest Duration
		r = d - d%unit
	}
	return r
}
