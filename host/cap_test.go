package host

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/stretchr/testify/require"
)

// TestAdmitAtTheCap: the engine admits layout.MaxModules (256) modules and
// refuses the 257th at once with ipc.ErrModulesFull (wire code
// "modules_full", a permanent refusal), counted; a convoy of all 256 gets
// one snapshot leased to every one of them (the dispatch's module sets
// reach past 64); a dead module's slot goes to the next new name.
func TestAdmitAtTheCap(t *testing.T) {
	s := newRSchema()
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog(), RingBytes: layout.MinRingCapacity}, newRWorld(t, s), nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	peer := ipc.PeerCred{PID: os.Getpid(), UID: uint32(os.Getuid())}
	hello := func(i int) ipc.Hello {
		return ipc.Hello{Name: fmt.Sprintf("m%d", i), Tier: ipc.TierSlow, Every: 1, Group: "all"}
	}
	var segBytes int
	for i := 0; i < layout.MaxModules; i++ {
		w, err := e.admit(hello(i), peer)
		require.NoError(t, err, "module %d of %d", i+1, layout.MaxModules)
		require.Equal(t, i, w.Slot)
		for _, f := range w.Files {
			f.Close()
		}
		segBytes += len(e.mods[i].seg.Data)
	}
	t.Logf("%d module segments with %d-byte rings: %d bytes", layout.MaxModules, layout.MinRingCapacity, segBytes)

	start := time.Now()
	_, err = e.admit(hello(layout.MaxModules), peer)
	require.ErrorIs(t, err, ipc.ErrModulesFull)
	require.Contains(t, err.Error(), fmt.Sprintf("too many modules (%d)", layout.MaxModules))
	require.Less(t, time.Since(start), time.Second, "refused at once")
	require.Equal(t, uint64(1), e.Bounds().ModulesRefused)
	require.Len(t, e.mods, layout.MaxModules)

	// One convoy of 256: one snapshot, every module a holder.
	st := e.Step()
	require.NoError(t, st.PublishErr)
	require.Equal(t, layout.MaxModules, st.Dispatched)
	slot := e.mods[0].holdSlot
	require.GreaterOrEqual(t, slot, 0)
	all := layout.ModuleSet{}
	for _, m := range e.mods {
		require.Equal(t, slot, m.holdSlot, "module %s", m.Name)
		require.Equal(t, uint64(1), m.Stats.Runs, "module %s", m.Name)
		all.Set(m.Slot)
	}
	require.Equal(t, all, e.pub.Holders(slot))
	require.Equal(t, uint64(1), e.Snapshots)
	// The last module finishes its tick: its lease alone ends.
	last := e.mods[layout.MaxModules-1]
	layout.Store64(last.seg.Data, layout.OffMDoneFrame, last.lastRun)
	e.Step()
	require.Equal(t, all.Minus(layout.ModuleSetOf(last.Slot)), e.pub.Holders(slot))

	// A dead module's slot goes to the next new name.
	e.mu.Lock()
	e.reclaim(e.mods[7])
	e.mu.Unlock()
	w, err := e.admit(hello(layout.MaxModules), peer)
	require.NoError(t, err)
	require.Equal(t, 7, w.Slot)
	for _, f := range w.Files {
		f.Close()
	}
	require.Equal(t, uint64(1), e.Bounds().SlotsReused)
}

// TestAdmitConfiguredLimit: Config.MaxModules below the table's cap is
// enforced the same way; the limits are validated.
func TestAdmitConfiguredLimit(t *testing.T) {
	s := newRSchema()
	e, err := New(Config{Instance: testInstance(t), Logger: quietLog(), RingBytes: layout.MinRingCapacity, MaxModules: 3}, newRWorld(t, s), nil)
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	peer := ipc.PeerCred{PID: os.Getpid(), UID: uint32(os.Getuid())}
	for i := 0; i < 4; i++ {
		w, err := e.admit(ipc.Hello{Name: fmt.Sprintf("m%d", i), Tier: ipc.TierFast, Every: 1}, peer)
		if i < 3 {
			require.NoError(t, err)
			for _, f := range w.Files {
				f.Close()
			}
			continue
		}
		require.ErrorIs(t, err, ipc.ErrModulesFull)
		require.Contains(t, err.Error(), "too many modules (3)")
	}

	for _, c := range []Config{{MaxModules: layout.MaxModules + 1}, {MaxModules: -1}, {Readers: layout.MaxReaders + 1}, {Readers: -1}} {
		c.Instance = testInstance(t)
		_, err := New(c, newRWorld(t, s), nil)
		require.ErrorIs(t, err, ErrConfig, "%+v", c)
	}
	d := DefaultConfig()
	require.Equal(t, layout.MaxModules, d.MaxModules)
	require.Equal(t, layout.DefaultReaders, d.Readers)
}
