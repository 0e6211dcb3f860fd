package logs

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// modelRound3 rounds d to three significant digits by decimal string
// arithmetic: the first three digits, plus one when the fourth is 5 or
// more (a half or more of the dropped digits: away from zero), times the
// power of ten of the dropped digits; truncated instead when that is
// beyond the largest Duration.
func modelRound3(d time.Duration) time.Duration {
	neg := d < 0
	mag := new(big.Int).Abs(big.NewInt(int64(d)))
	s := mag.String()
	if len(s) <= 3 {
		return d
	}
	head, _ := strconv.ParseInt(s[:3], 10, 64)
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(s)-3)), nil)
	up := new(big.Int).Mul(big.NewInt(head+1), scale)
	r := new(big.Int).Mul(big.NewInt(head), scale)
	if s[3] >= '5' && up.IsInt64() {
		r = up
	}
	if neg {
		r.Neg(r)
	}
	return time.Duration(r.Int64())
}

// sigDigits counts the significant digits of a decimal integer.
func sigDigits(n int64) int {
	s := strings.TrimLeft(strconv.FormatInt(n, 10), "-")
	s = strings.TrimRight(s, "0")
	return max(len(s), 1)
}

// TestRound3Model: Round3 agrees with the decimal model on durations
// spread over every magnitude (log-uniform, both signs, the extremes),
// keeps at most three significant digits, moves a duration by at most half
// a unit of its third digit, and is idempotent.
func TestRound3Model(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ds := []time.Duration{0, 1, -1, 999, 1000, 1004, 1005, 9995, math.MaxInt64, math.MinInt64, math.MinInt64 + 1}
	for range 20_000 {
		d := time.Duration(math.Exp(rng.Float64() * math.Log(math.MaxInt64)))
		if d < 0 { // the conversion overflowed at the top end
			d = math.MaxInt64
		}
		if rng.IntN(4) == 0 {
			d = -d
		}
		ds = append(ds, d)
	}
	for _, d := range ds {
		got := Round3(d)
		if d != math.MinInt64 {
			require.Equal(t, modelRound3(d), got, "%d", d)
		}
		require.LessOrEqual(t, sigDigits(int64(got)), 3, "%d -> %d", d, got)
		require.Equal(t, got, Round3(got), "idempotent: %d", d)
		if digits := len(strconv.FormatInt(int64(d), 10)); d > 0 && digits > 3 && d < math.MaxInt64/10 {
			unit := int64(math.Pow10(digits - 3))
			diff := int64(got - d)
			require.LessOrEqual(t, 2*max(diff, -diff), unit, "%d -> %d", d, got)
		}
	}
}

// TestRound3Boundaries: the unit boundaries a carry crosses, and the
// figures the status line used to show with false precision.
func TestRound3Boundaries(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want string
	}{
		{999500 * time.Nanosecond, "1ms"},
		{999499 * time.Nanosecond, "999µs"},
		{9995 * time.Microsecond, "10ms"},
		{99950 * time.Microsecond, "100ms"},
		{999500 * time.Microsecond, "1s"},
		{1234567 * time.Microsecond, "1.23s"},
		{1200 * time.Millisecond, "1.2s"},
		{524288 * time.Nanosecond, "524µs"},
		{2097152 * time.Nanosecond, "2.1ms"},
		{8388608 * time.Nanosecond, "8.39ms"},
		{16777216 * time.Nanosecond, "16.8ms"},
		{999 * time.Nanosecond, "999ns"},
		{1999 * time.Nanosecond, "2µs"},
		{-1234 * time.Nanosecond, "-1.23µs"},
		{0, "0s"},
	} {
		require.Equal(t, c.want, Round3(c.in).String(), "%d ns", int64(c.in))
	}
}
