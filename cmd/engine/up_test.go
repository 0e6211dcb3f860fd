package main

import (
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/supervisor"
	"github.com/stretchr/testify/require"
)

// createModuleSegment creates the module segment of slot for module name
// with the given heartbeat (Unix ns).
func createModuleSegment(t *testing.T, instance string, slot int, name string, beat uint64) *shm.Segment {
	t.Helper()
	g, err := layout.ComputeModuleGeometry(layout.MinRingCapacity)
	require.NoError(t, err)
	seg, err := shm.Create(layout.ModuleSegmentName(instance, slot), g.TotalSize)
	require.NoError(t, err)
	t.Cleanup(func() { seg.Close() })
	info := layout.ModuleInfo{Slot: uint32(slot), Name: name, Frequency: 1}
	require.NoError(t, layout.EncodeModule(seg.Data, g, layout.Header{Instance: instance, CreatorPID: uint32(os.Getpid())}, info))
	layout.MarkReady(seg.Data)
	layout.Store64(seg.Data, layout.OffMHeartbeat, beat)
	return seg
}

// TestHeartbeatsFollowSegments: the hang monitor's heartbeat reader keeps
// module segments mapped by name, reads live values, and follows a module
// to the new segment of a restarted engine (another slot, the old file
// unlinked, the old path reused by another module).
func TestHeartbeatsFollowSegments(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	hb := newHeartbeats(inst)
	t.Cleanup(hb.close)

	_, ok := hb.last("ai")
	require.False(t, ok, "no segment yet")
	a := createModuleSegment(t, inst, 0, "ai", 0)
	_, ok = hb.last("ai")
	require.False(t, ok, "no heartbeat yet")
	layout.Store64(a.Data, layout.OffMHeartbeat, 1000)
	last, ok := hb.last("ai")
	require.True(t, ok)
	require.Equal(t, time.Unix(0, 1000), last)
	layout.Store64(a.Data, layout.OffMHeartbeat, 2000)
	last, _ = hb.last("ai")
	require.Equal(t, time.Unix(0, 2000), last, "the mapping is read live")
	_, ok = hb.last(supervisor.EngineName)
	require.False(t, ok)

	// Engine restart: every segment is recreated; "ai" moves to slot 1 and
	// another module takes slot 0.
	require.NoError(t, a.Unlink())
	createModuleSegment(t, inst, 0, "telemetry", 3000)
	createModuleSegment(t, inst, 1, "ai", 4000)
	last, ok = hb.last("ai")
	require.True(t, ok)
	require.Equal(t, time.Unix(0, 4000), last, "the new segment, not the unlinked one")
	last, ok = hb.last("telemetry")
	require.True(t, ok)
	require.Equal(t, time.Unix(0, 3000), last)
	require.Len(t, hb.segs, 2)
}
