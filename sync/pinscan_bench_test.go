package sync

import (
	"fmt"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
	"github.com/fdp-engine/fdp/world"
	"github.com/stretchr/testify/require"
)

// BenchmarkPinScan measures the engine-side cost, per publish, of the pin
// and lease checks with 64 readers, in one run:
//
//   - shared-table-64: the design before issue 11, where every module pinned
//     in the shared leases segment: 64 entries of its reader table hold a
//     pin (the external reader table has the same shape and scan), no module
//     pin is watched;
//   - module-segments-64: 64 modules, each pinning in its own module
//     segment (64 separate mappings), all in a tick and so all watched; the
//     external reader table is empty but still scanned;
//   - module-segments-256: the same at the module cap (layout.MaxModules);
//   - readers-1024: the external reader table at its bound
//     (layout.MaxReaders), every entry pinned, no module pin watched;
//     readers-1024-idle: the same table with no entry pinned (what a large
//     configured table costs while no tool reads);
//   - none: no reader at all (the fixed part of the scan).
//
// One op is what a publish spends on them: choosing a slot (pickSlot: latest
// and leases) and claiming it (the pin pre-check, then the scan after the
// odd seq store). The pins name the latest slot, so the claim never aborts.
// ns/op is reported per publish; "pub-ns" is a whole Publish of an unchanged
// small world (no column copied) in the same configuration.
func BenchmarkPinScan(b *testing.B) {
	b.Run("table-64", func(b *testing.B) { benchPinScan(b, layout.DefaultReaders) })
	b.Run("table-1024", func(b *testing.B) { benchPinScan(b, layout.MaxReaders) })
}

func benchPinScan(b *testing.B, readers int) {
	reg, x := testRegistry(b)
	w, err := world.New(reg, world.Config{ChunkCapacity: 64, MaxChunks: 4})
	require.NoError(b, err)
	for i := 0; i < 100; i++ {
		e, err := w.Create()
		require.NoError(b, err)
		require.NoError(b, world.Set(w, e, x.pos, Pos{X: float32(i)}))
	}
	segs, err := CreateWorldSegments(instanceName(b), w, 0, readers)
	require.NoError(b, err)
	b.Cleanup(func() { segs.Unlink(); segs.Close() })
	pub, err := NewPublisher(w, segs)
	require.NoError(b, err)
	fx := &fixture{w: w, ids: x, segs: segs, pub: pub}
	all := world.MaskAll()
	_, err = fx.pub.Publish(1, all)
	require.NoError(b, err)
	latest := fx.pub.Latest()
	pin := layout.PackPin(latest, 2)
	ll, lb := fx.pub.LeasesLayout(), fx.segs.Leases.Data

	mods := make([]*shm.Segment, layout.MaxModules)
	for i := range mods {
		mods[i], err = shm.Create(shm.SegmentName(segs.Instance, fmt.Sprintf("mod.%d", i)), 8192)
		require.NoError(b, err)
		defer func(s *shm.Segment) { s.Unlink(); s.Close() }(mods[i])
	}
	setShared := func(on bool) {
		for r := 0; r < ll.Readers; r++ {
			v := uint64(0)
			if on {
				v = pin
			}
			layout.Store64(lb, ll.ReaderOff(r)+layout.ReaderPin, v)
		}
	}
	setModules := func(k int) {
		for i, m := range mods {
			if i < k {
				layout.Store64(m.Data, layout.OffMPin, pin)
				require.NoError(b, fx.pub.WatchPin(i, m.Data, layout.OffMPin))
			} else {
				fx.pub.UnwatchPin(i)
			}
		}
	}
	frame := uint64(1)
	run := func(b *testing.B) {
		b.ReportAllocs()
		sink := 0
		for i := 0; i < b.N; i++ {
			s := fx.pub.pickSlot(0, world.MaskAll())
			pre := fx.pub.pinned(s)  // claim's pre-check
			post := fx.pub.pinned(s) // claim's scan after the odd seq store
			if pre || post || fx.pub.slotLeased(s) {
				sink++
			}
		}
		b.StopTimer()
		if sink != 0 {
			b.Fatalf("a claim aborted %d times", sink)
		}
		const pubs = 2000
		start := time.Now()
		for i := 0; i < pubs; i++ {
			frame++
			if _, err := fx.pub.Publish(frame, all); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/pubs, "pub-ns")
		// The pins follow the latest slot, so that no claim aborts.
		pin = layout.PackPin(fx.pub.Latest(), 2)
	}
	if readers == layout.MaxReaders {
		b.Run("readers-1024", func(b *testing.B) { setShared(true); setModules(0); run(b) })
		b.Run("readers-1024-idle", func(b *testing.B) { setShared(false); setModules(0); run(b) })
		return
	}
	b.Run("none", func(b *testing.B) { setShared(false); setModules(0); run(b) })
	b.Run("shared-table-64", func(b *testing.B) { setShared(true); setModules(0); run(b) })
	b.Run("module-segments-64", func(b *testing.B) { setShared(false); setModules(64); run(b) })
	b.Run("module-segments-256", func(b *testing.B) { setShared(false); setModules(layout.MaxModules); run(b) })
}
