package host

import (
	"os"
	"os/exec"
	"testing"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/stretchr/testify/require"
)

// TestAdmitReclaimsDeadIncarnation: a restarted module may connect before
// the frame loop has handled its predecessor's death. The engine admits it
// when the registered process is gone or its connection closed, reclaiming
// the old incarnation; it still refuses a second live process of the name.
func TestAdmitReclaimsDeadIncarnation(t *testing.T) {
	s := newRSchema()
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog()}, newRWorld(t, s), nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	dead := exec.Command("true")
	require.NoError(t, dead.Run()) // exited and reaped: its pid names no process
	hello := ipc.Hello{Name: "m", Tier: ipc.TierFast, Every: 1}

	_, err = e.admit(hello, ipc.PeerCred{PID: dead.Process.Pid})
	require.NoError(t, err)
	require.Len(t, e.mods, 1)

	// Its death was never reported: the new incarnation is admitted anyway.
	_, err = e.admit(hello, ipc.PeerCred{PID: os.Getpid()})
	require.NoError(t, err, "the registered process is gone")
	m := e.mods[0]
	require.Equal(t, os.Getpid(), m.PID)
	require.Equal(t, StateJoined, m.State)
	require.Equal(t, uint64(1), m.Stats.Deaths, "the dead incarnation was reclaimed")

	// The registered process (this one) is alive: another is refused.
	_, err = e.admit(hello, ipc.PeerCred{PID: os.Getppid()})
	require.ErrorContains(t, err, "already connected")
	require.Equal(t, os.Getpid(), m.PID)

	// Once its connection closed it counts as gone, even while it runs.
	e.closing[m.Slot].Store(int64(os.Getpid()))
	_, err = e.admit(hello, ipc.PeerCred{PID: os.Getppid()})
	require.NoError(t, err)
	require.Equal(t, os.Getppid(), m.PID)
	require.Equal(t, uint64(2), m.Stats.Deaths)
}
