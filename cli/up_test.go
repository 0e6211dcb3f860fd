package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/supervisor"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/stretchr/testify/require"
)

// engineHeader is the header of the segments of a (pretend) engine process
// with the given creator start time.
func engineHeader(instance string, start uint64) layout.Header {
	return layout.Header{Instance: instance, CreatorPID: uint32(os.Getpid()), CreatorTime: start}
}

// createWorldSegment creates an (empty-schema) world segment whose creator
// is hdr's, with the given publish heartbeat (Unix ns).
func createWorldSegment(t *testing.T, hdr layout.Header, beat uint64) *shm.Segment {
	t.Helper()
	g, err := layout.ComputeWorldGeometry(layout.WorldParams{Instance: hdr.Instance, Slots: 2, ChunkCapacity: 16, MaxChunks: 1})
	require.NoError(t, err)
	seg, err := shm.Create(shm.SegmentName(hdr.Instance, fsync.WorldSegment), g.TotalSize)
	require.NoError(t, err)
	t.Cleanup(func() { seg.Close() })
	require.NoError(t, layout.EncodeWorld(seg.Data, g, hdr))
	layout.MarkReady(seg.Data)
	layout.Store64(seg.Data, layout.OffWStatHeartbeat, beat)
	return seg
}

// createModuleSegment creates the module segment of slot for module name
// with the given heartbeat (Unix ns), created by hdr's engine.
func createModuleSegment(t *testing.T, hdr layout.Header, slot int, name string, beat uint64) *shm.Segment {
	t.Helper()
	g, err := layout.ComputeModuleGeometry(layout.MinRingCapacity)
	require.NoError(t, err)
	seg, err := shm.Create(layout.ModuleSegmentName(hdr.Instance, slot), g.TotalSize)
	require.NoError(t, err)
	t.Cleanup(func() { seg.Close() })
	info := layout.ModuleInfo{Slot: uint32(slot), Name: name, Frequency: 1}
	require.NoError(t, layout.EncodeModule(seg.Data, g, hdr, info))
	layout.MarkReady(seg.Data)
	layout.Store64(seg.Data, layout.OffMHeartbeat, beat)
	return seg
}

// TestHeartbeatsFollowSegments: the hang monitor's heartbeat reader keeps
// segments mapped by name, reads live values (the engine's from its world
// segment), follows a module to the new segment of a restarted engine
// (another slot, the old file unlinked, the old path reused by another
// module), and ignores a dead engine's module segment that is still there.
func TestHeartbeatsFollowSegments(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	hb := newHeartbeats(inst)
	t.Cleanup(hb.close)

	last, ok := hb.last(supervisor.EngineName)
	require.True(t, ok, "the engine is judged even before its world segment exists")
	require.True(t, last.IsZero())
	old := engineHeader(inst, 1)
	ws := createWorldSegment(t, old, 0)
	last, ok = hb.last(supervisor.EngineName)
	require.True(t, ok)
	require.True(t, last.IsZero(), "nothing published yet")
	layout.Store64(ws.Data, layout.OffWStatHeartbeat, 500)
	last, _ = hb.last(supervisor.EngineName)
	require.Equal(t, time.Unix(0, 500), last, "the engine's heartbeat is its last publish")

	_, ok = hb.last("ai")
	require.False(t, ok, "no segment yet")
	a := createModuleSegment(t, old, 0, "ai", 0)
	_, ok = hb.last("ai")
	require.False(t, ok, "no heartbeat yet")
	layout.Store64(a.Data, layout.OffMHeartbeat, 1000)
	last, ok = hb.last("ai")
	require.True(t, ok)
	require.Equal(t, time.Unix(0, 1000), last)
	layout.Store64(a.Data, layout.OffMHeartbeat, 2000)
	last, _ = hb.last("ai")
	require.Equal(t, time.Unix(0, 2000), last, "the mapping is read live")

	// Engine restart: a new world segment (another creator); the dead
	// engine's module segment of "ai" is still there: it does not count.
	require.NoError(t, ws.Unlink())
	cur := engineHeader(inst, 2)
	ws2 := createWorldSegment(t, cur, 0)
	_, ok = hb.last("ai")
	require.False(t, ok, "the dead engine's module segment is not the module's heartbeat")
	last, _ = hb.last(supervisor.EngineName)
	require.True(t, last.IsZero(), "the new engine has not published")
	layout.Store64(ws2.Data, layout.OffWStatHeartbeat, 3500)
	last, _ = hb.last(supervisor.EngineName)
	require.Equal(t, time.Unix(0, 3500), last)

	// The new engine recreates the segments; "ai" moves to slot 1 and
	// another module takes slot 0.
	require.NoError(t, a.Unlink())
	createModuleSegment(t, cur, 0, "telemetry", 3000)
	createModuleSegment(t, cur, 1, "ai", 4000)
	last, ok = hb.last("ai")
	require.True(t, ok)
	require.Equal(t, time.Unix(0, 4000), last, "the new segment, not the unlinked one")
	last, ok = hb.last("telemetry")
	require.True(t, ok)
	require.Equal(t, time.Unix(0, 3000), last)
	require.Len(t, hb.segs, 2)
}

// TestReleaseReaderDuringEngineRestart: reclaiming a dead module's reader
// entry while an engine restarts (leases segment absent, not ready, or left
// by a dead engine) is skipped quietly at debug level; on a live, ready
// segment the dead pid's entry is released.
func TestReleaseReaderDuringEngineRestart(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))

	require.NoError(t, releaseReader(inst, 12345, log), "no leases segment")
	require.Contains(t, logBuf.String(), "level=DEBUG msg=\"reclaim skipped: no leases segment")

	g, err := layout.ComputeLeasesGeometry(2, layout.DefaultReaders)
	require.NoError(t, err)
	name := shm.SegmentName(inst, fsync.LeasesSegment)
	seg, err := shm.Create(name, g.TotalSize)
	require.NoError(t, err)
	t.Cleanup(func() { seg.Close() })
	require.NoError(t, layout.EncodeLeases(seg.Data, g, layout.Header{Instance: inst, CreatorPID: uint32(os.Getpid()), CreatorTime: shm.SelfStartTime()}))
	// Not ready yet: a starting engine.
	logBuf.Reset()
	require.NoError(t, releaseReader(inst, 12345, log))
	require.Contains(t, logBuf.String(), "level=DEBUG msg=\"reclaim skipped: leases segment not ready")

	// Ready and live: the dead pid's entry (with its pin) is released.
	layout.MarkReady(seg.Data)
	ll, err := layout.DecodeLeases(seg.Data)
	require.NoError(t, err)
	o := ll.ReaderOff(0)
	layout.Store32(seg.Data, o+layout.ReaderPID, 12345)
	layout.Store64(seg.Data, o+layout.ReaderPin, layout.PackLatest(7, 0))
	logBuf.Reset()
	require.NoError(t, releaseReader(inst, 12345, log))
	require.Zero(t, layout.Load32(seg.Data, o+layout.ReaderPID), "entry released")
	require.Zero(t, layout.Load64(seg.Data, o+layout.ReaderPin), "pin released")
	require.NotContains(t, logBuf.String(), "reclaim skipped")

	// Corrupt and live: a real error.
	seg.Data[0] ^= 0xff
	require.Error(t, releaseReader(inst, 12345, log))
}

// TestInspectAsideCopy: `engine ls`, `dump` and `gc` on an aside copy of a
// dead engine's world (fdp.<i>.world.prev): listed with its name kind and
// its frame, decoded as a world segment, and kept by gc while its instance
// may still recover from it.
func TestInspectAsideCopy(t *testing.T) {
	useTempShm(t)
	inst := uniqueInstance()
	dead := engineHeader(inst, shm.SelfStartTime()+1) // our pid, another start time: dead
	ws := createWorldSegment(t, dead, 0)
	layout.Store64(ws.Data, layout.OffWLatest, layout.PackLatest(77, 0))
	require.NoError(t, ws.Close())
	aside := shm.SegmentName(inst, shm.AsidePrev.Kind())
	require.NoError(t, shm.Rename(shm.SegmentName(inst, fsync.WorldSegment), aside))

	out, _, err := engineCmd(t, "ls", "--json")
	require.NoError(t, err)
	var es []lsEntry
	require.NoError(t, json.Unmarshal([]byte(out), &es))
	require.Len(t, es, 1)
	require.Equal(t, "world.prev", es[0].Kind)
	require.Equal(t, "world", es[0].SegmentKind)
	require.Equal(t, shm.StateStale, es[0].State)

	out, _, err = engineCmd(t, "dump", "--json", aside)
	require.NoError(t, err, out)
	var r inspect.Report
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.Equal(t, "world", r.Header.Kind)

	out, _, err = engineCmd(t, "gc", "--dry-run", "--json")
	require.NoError(t, err)
	require.JSONEq(t, `{"dry_run":true,"removed":[]}`, out)
	out, _, err = engineCmd(t, "gc")
	require.NoError(t, err)
	require.Contains(t, out, "nothing to remove")
	infos, err := shm.List()
	require.NoError(t, err)
	require.Len(t, infos, 1)
	require.True(t, infos[0].KeptForRecovery)
	require.Equal(t, uint64(77), infos[0].Frame)
}
