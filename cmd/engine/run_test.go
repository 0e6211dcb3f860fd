package main

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/demo"
	"github.com/fdp-engine/fdp/host"
	"github.com/stretchr/testify/require"
)

// TestStatusLineShowsRefusals: the status line shows the publishes that
// found no free slot and the snapshots refused to due convoy groups in the
// interval when there were any, and neither when there were none.
func TestStatusLineShowsRefusals(t *testing.T) {
	useTempShm(t)
	s, err := demo.NewSchema()
	require.NoError(t, err)
	cfg := demo.DefaultConfig()
	cfg.Entities = 100
	sim, err := demo.NewSim(s, cfg)
	require.NoError(t, err)
	eng, err := host.New(host.Config{Instance: uniqueInstance(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, sim.W, sim)
	require.NoError(t, err)
	defer eng.Close()
	st := eng.Step()
	require.NoError(t, st.PublishErr)

	quiet := statusLine(eng, st, 100, time.Second, 60, 0, 0, 0, 0, 0)
	require.Contains(t, quiet, "60.0 fps")
	require.NotContains(t, quiet, "snapshots refused")
	require.NotContains(t, quiet, "no free slot")

	line := statusLine(eng, st, 100, time.Second, 60, 0, 7, 0, 0, 0)
	require.Contains(t, line, "60.0 fps")
	require.Contains(t, line, "  snapshots refused 7")
	require.NotContains(t, line, "no free slot", "snapshots were refused, every publish found a slot")
	require.NotContains(t, line, "WARNING")

	line = statusLine(eng, st, 100, time.Second, 0, 60, 3, 0, 0, 0)
	require.Contains(t, line, "  no free slot 60  WARNING: nothing published (every slot pinned or leased)  snapshots refused 3")
}
