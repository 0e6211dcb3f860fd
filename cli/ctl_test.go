package cli

import (
	"strings"
	"testing"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/stretchr/testify/require"
)

// TestParseCtl: the arguments of `engine ctl` become the request the engine
// checks, and every mistake is one line naming the operation, before
// anything is sent.
func TestParseCtl(t *testing.T) {
	ok := map[string]ipc.CtlRequest{
		"pause":        {Op: ipc.CtlPause},
		"resume":       {Op: ipc.CtlResume},
		"status":       {Op: ipc.CtlStatus},
		"step":         {Op: ipc.CtlStep, Frames: 1},
		"step 5":       {Op: ipc.CtlStep, Frames: 5},
		"step 1048576": {Op: ipc.CtlStep, Frames: ipc.CtlMaxStep},
		"speed 0.5":    {Op: ipc.CtlSpeed, Speed: 0.5},
		"speed 64":     {Op: ipc.CtlSpeed, Speed: 64},
		"seek 1200":    {Op: ipc.CtlSeek, Frame: 1200},
	}
	for in, want := range ok {
		f := strings.Fields(in)
		got, err := parseCtl(f[0], f[1:])
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"fly", "pause 1", "resume x", "status 2", "step 0", "step -1", "step 1048577", "step x",
		"speed", "speed 0", "speed 0.0009", "speed -2", "speed 64.5", "speed NaN", "speed fast", "seek", "seek -1", "seek x"} {
		f := strings.Fields(in)
		_, err := parseCtl(f[0], f[1:])
		require.Error(t, err, in)
		require.NotContains(t, err.Error(), "\n", in)
		require.True(t, strings.HasPrefix(err.Error(), "ctl"), "%s: %v", in, err)
	}
}

// TestCtlLine: the state in one line.
func TestCtlLine(t *testing.T) {
	require.Equal(t, "demo: paused at frame 1205, sim time 20.083s, speed 0.5, 3 steps pending",
		ctlLine("demo", ipc.CtlState{Paused: true, Speed: 0.5, Frame: 1205, SimNanos: 20083333130, Steps: 3}))
	require.Equal(t, "r: running at frame 7, sim time 0s, speed 1, replay of frames 100..200",
		ctlLine("r", ipc.CtlState{Speed: 1, Frame: 7, Replay: true, First: 100, Last: 200}))
	ops, _ := completeCtl(nil, []string{"demo"}, "")
	require.Equal(t, []string{"pause", "resume", "step", "speed", "seek", "status"}, ops)
}
