package host

import (
	"os"
	"testing"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestJoinedSlowModuleDueAtOnce: a slow module that (re)joins gets its first
// tick on the next frame, not at the next multiple of Every; after that it
// runs on its frequency.
func TestJoinedSlowModuleDueAtOnce(t *testing.T) {
	s := newRSchema()
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, newRWorld(t, s), nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	e.Step() // frame 1
	_, err = e.admit(ipc.Hello{Name: "slow", Tier: ipc.TierSlow, Every: 6}, ipc.PeerCred{PID: os.Getpid()})
	require.NoError(t, err)
	m := e.mods[0]
	tickFrame := func() uint64 { return layout.Load64(m.seg.Data, layout.OffMTickFrame) }

	e.Step() // frame 2: not a multiple of 6, but the module never ran
	require.Equal(t, uint64(2), tickFrame(), "a joined slow module is due at once")
	require.Equal(t, uint64(1), m.Stats.Runs)
	// Its tick completes (the engine releases a lease left behind), and it
	// is not due again before frame 6.
	layout.Store64(m.seg.Data, layout.OffMDoneFrame, 2)
	for f := uint64(3); f <= 5; f++ {
		e.Step()
		require.Equal(t, uint64(2), tickFrame(), "frame %d: not due", f)
	}
	e.Step()
	require.Equal(t, uint64(6), tickFrame(), "due on its frequency")
	require.Equal(t, uint64(2), m.Stats.Runs)
}
