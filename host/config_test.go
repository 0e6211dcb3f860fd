package host

import (
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestConfigValidate: DefaultConfig is what a zero Config runs with, and
// New refuses what it cannot run with a clear error.
func TestConfigValidate(t *testing.T) {
	d := DefaultConfig()
	require.Equal(t, 60, d.FrameRate)
	require.Equal(t, 4*time.Millisecond, d.FastDeadline)
	require.Equal(t, 32, d.Slots)
	require.Equal(t, 2*time.Second, d.SlotIdle)
	require.Equal(t, 5, d.MaxFailures)
	require.NotNil(t, d.Logger)
	d.Instance = "x" // required, no default
	require.NoError(t, d.validate())
	s := newRSchema()
	for _, bad := range []Config{{Slots: layout.MaxSlots + 1}, {Slots: 1}, {ShmLimit: -1}, {ShmLimit: 4096}, {FrameRate: MaxFrameRate + 1}, {MaxFailures: -1}, {MaxSlowTick: -time.Second},
		{FrameRate: -5}, {FastDeadline: -time.Millisecond}, {RingBytes: 1000}, {RingBytes: -4096}, {EventLogBytes: 5000},
		{PrewakeEarlyMax: -time.Millisecond}, {PrewakeMax: -1}} {
		bad.Instance, bad.Logger = testInstance(t), quietLog()
		_, err := New(bad, newRWorld(t, s), nil)
		require.ErrorIs(t, err, ErrConfig, "%+v", bad)
	}
	for _, name := range []string{"", "a/../b", "x y", "0123456789012345678901234567890123"} {
		_, err := New(Config{Instance: name, Logger: quietLog()}, newRWorld(t, s), nil)
		require.ErrorIs(t, err, ErrConfig, "instance %q", name)
	}
}
