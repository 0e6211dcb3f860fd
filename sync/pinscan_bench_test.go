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
//   - none: no reader at all (the fixed part of the scan).
//
// One op is what a publish spends on them: choosing a slot (pickSlot: latest
// and leases) and claiming it (the pin pre-check, then the scan after the
// odd seq store). The pins name the latest slot, so the claim never aborts.
// ns/op is reported per publish; "pub-ns" is a whole Publish of an unchanged
// small world (no column copied) in the same configuration.
func BenchmarkPinScan(b *testing.B) {
	fx := newFixture(b, 64, 4, 100)
	all := world.MaskAll()
	_, err := fx.pub.Publish(1, all)
	require.NoError(b, err)
	latest := fx.pub.Latest()
	pin := layout.PackPin(latest, 2)
	ll, lb := fx.pub.LeasesLayout(), fx.segs.Leases.Data

	mods := make([]*shm.Segment, 64)
	for i := range mods {
		mods[i], err = shm.Create(shm.SegmentName(fx.inst, fmt.Sprintf("mod.%d", i)), 8192)
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
	setModules := func(on bool) {
		for i, m := range mods {
			if on {
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
	b.Run("none", func(b *testing.B) { setShared(false); setModules(false); run(b) })
	b.Run("shared-table-64", func(b *testing.B) { setShared(true); setModules(false); run(b) })
	b.Run("module-segments-64", func(b *testing.B) { setShared(false); setModules(true); run(b) })
}
