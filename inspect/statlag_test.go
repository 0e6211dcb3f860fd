package inspect

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStatTextModuleLag checks the reader lines of `engine stat`: a module
// that holds a frame shows that frame's lag; one between its ticks (holding
// nothing, the usual case of a slow module sampled at random) shows that it
// holds no frame and the lag of its last tick from its statistics, not a
// bare "idle" (issue 18: stat promised per-reader lag and printed "idle").
func TestStatTextModuleLag(t *testing.T) {
	two := int64(2)
	line := StatLine{Instance: "x", Published: true, Frame: 100,
		Readers: []ReaderLag{
			{Kind: "module", Index: 0, Name: "held", PID: 7, Alive: true, Via: "lease", Lag: &two},
			{Kind: "module", Index: 1, Name: "between", PID: 8, Alive: true},
			{Kind: "module", Index: 2, Name: "nostats", PID: 9, Alive: true},
			{Kind: "external", Index: 0, Name: "tool", PID: 10, Alive: true},
		},
		Modules: []ModuleStatLine{
			{Slot: 0, Name: "held", Stats: &ModuleStatsReport{LagFrames: 5, LagMaxFrames: 6}},
			{Slot: 1, Name: "between", Stats: &ModuleStatsReport{LagFrames: 3, LagMaxFrames: 4}},
			{Slot: 2, Name: "nostats"},
		},
	}
	var b bytes.Buffer
	require.NoError(t, StatText(&b, line))
	out := b.String()
	require.Contains(t, out, "module 0 held pid 7 alive lag 2 (lease)\n")
	require.Contains(t, out, "module 1 between pid 8 alive idle (holds no frame): last tick's lag 3 (max 4)\n")
	require.Contains(t, out, "module 2 nostats pid 9 alive idle (holds no frame)\n")
	require.Contains(t, out, "reader 0 tool pid 10 alive idle (holds no frame)\n")
}
