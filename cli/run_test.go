package cli

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/ipc"
	"github.com/stretchr/testify/require"
)

// TestStatusLineShowsRefusals: the status line shows the publishes that
// found no free slot and the snapshots refused to due convoy groups in the
// interval when there were any, and neither when there were none.
func TestStatusLineShowsRefusals(t *testing.T) {
	useTempShm(t)
	tw := testWorld().withDefaults()
	p := Params{Entities: 100}
	w, err := tw.newWorld(p)
	require.NoError(t, err)
	sim, err := tw.Simulation(w, false, p)
	require.NoError(t, err)
	eng, err := host.New(host.Config{Instance: uniqueInstance(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, w, sim)
	require.NoError(t, err)
	defer eng.Close()
	st := eng.Step()
	require.NoError(t, st.PublishErr)

	quiet := statusLine(eng, st, 100, time.Second, 60, 0, 0, 0, 0, 0, 0)
	require.Contains(t, quiet, "60.0 fps")
	require.NotContains(t, quiet, "snapshots refused")
	require.NotContains(t, quiet, "no free slot")

	line := statusLine(eng, st, 100, time.Second, 60, 0, 0, 7, 0, 0, 0)
	require.Contains(t, line, "60.0 fps")
	require.Contains(t, line, "  snapshots refused 7")
	require.NotContains(t, line, "no free slot", "snapshots were refused, every publish found a slot")
	require.NotContains(t, line, "WARNING")

	line = statusLine(eng, st, 100, time.Second, 0, 60, 0, 3, 0, 0, 0)
	require.Contains(t, line, "  no free slot 60  WARNING: nothing published (every slot pinned or leased)  snapshots refused 3")

	// Skipped for memory: the reason is said, not pins.
	line = statusLine(eng, st, 100, time.Second, 0, 60, 60, 0, 0, 0, 0)
	require.Contains(t, line, "  no free slot 60 (60 for memory)  WARNING: nothing published (no memory for a slot")
	require.NotContains(t, line, "pinned")

	// The held memory is the publisher's account.
	require.Contains(t, line, "  shm "+fmtBytes(eng.Publisher().Backed()))
}

// TestParseBytes: the --shm-limit values.
// TestStatusLineTime: the status line says PAUSED (with the steps pending)
// and a speed other than 1, and nothing of either when running at speed 1.
func TestStatusLineTime(t *testing.T) {
	require.Equal(t, "", timeText(ipc.CtlState{Speed: 1}))
	require.Equal(t, "  speed 0.5", timeText(ipc.CtlState{Speed: 0.5}))
	require.Equal(t, "  PAUSED", timeText(ipc.CtlState{Speed: 1, Paused: true}))
	require.Equal(t, "  speed 2  PAUSED (3 steps pending)", timeText(ipc.CtlState{Speed: 2, Paused: true, Steps: 3}))
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "512MiB": 512 << 20, "2GiB": 2 << 30, "20M": 20 << 20,
		"20K": 20 << 10, "1GB": 1e9, " 7 B": 7} {
		got, err := parseBytes(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for in, want := range map[string]string{"-1": "not a byte count", "1.5G": "not a byte count", "junk": "not a byte count",
		"18446744073709551615": "too large", "99999999999TB": "too large"} {
		_, err := parseBytes(in)
		require.ErrorContains(t, err, want, in)
	}
}
