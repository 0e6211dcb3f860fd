package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/fdp-engine/fdp/layout"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// scaleSizes are the entity counts of docs/scale.png.
var scaleSizes = []int{100_000, 300_000, 1_000_000, 3_000_000, 10_000_000}

// oldSlots is the slot count of the engine before sparse segments (every
// slot sized for the whole world and written at start): the old model of
// the memory panel.
const oldSlots = 10

// pubRun is one repetition of the publish measurement at one dirty
// fraction: medians of k publishes and of k memcpys of the same bytes.
type pubRun struct {
	publish, memcpy time.Duration
	bytes           int // per publish
}

func (r pubRun) ratio() float64 { return float64(r.publish) / float64(r.memcpy) }

// scaleRow is everything measured at one entity count.
type scaleRow struct {
	entities int
	build    time.Duration   // world.New and the entities' creation
	startup  []time.Duration // segments created, publisher, first publish
	runs     [][]pubRun      // [fraction][repetition]
	// Memory with the latest frame, the spare and two held snapshots.
	allocated int64 // the world segment's allocated blocks
	backed    int64 // the publisher's account (Publisher.Backed)
	ideal     int64 // 2 × full content + each snapshot's content
	old       int64 // oldSlots × a whole slot
	reserved  int64 // the segment's size (address space)
}

// measureScale measures a world of n entities, reps times each figure.
func measureScale(n, reps int, log io.Writer) (scaleRow, error) {
	row := scaleRow{entities: n, runs: make([][]pubRun, len(fractions))}
	t0 := time.Now()
	tw, err := newTestWorld(n)
	if err != nil {
		return row, err
	}
	row.build = time.Since(t0)
	fmt.Fprintf(log, "%d entities: world built in %v\n", n, row.build.Round(time.Millisecond))
	all := world.MaskAll()

	// Start-up: the segments, the publisher and the first publish, which
	// copies the whole world.
	var segs *fsync.WorldSegments
	var pub *fsync.Publisher
	for r := 0; r < reps; r++ {
		if segs != nil {
			dropSegments(segs)
		}
		t0 = time.Now()
		if segs, err = tw.createSegments(); err != nil {
			return row, err
		}
		if pub, err = fsync.NewPublisher(tw.w, segs); err != nil {
			dropSegments(segs)
			return row, err
		}
		if _, err = pub.Publish(1, all); err != nil {
			dropSegments(segs)
			return row, err
		}
		row.startup = append(row.startup, time.Since(t0))
	}
	defer dropSegments(segs)
	frame := uint64(1)
	publish := func() (fsync.PublishStats, error) {
		frame++
		return pub.Publish(frame, all)
	}
	// The publishes alternate between two slots: both hold the whole world.
	for i := 0; i < 3; i++ {
		tw.dirty(fractions[2].pick)
		if _, err := publish(); err != nil {
			return row, err
		}
	}

	// Publish against memcpy, interleaved: each repetition measures every
	// fraction, the publishes then the memcpy of their bytes.
	buf := newCopyBuffers(int(tw.contentBytes(all)))
	k := max(7, min(31, 31_000_000/n))
	for r := 0; r < reps; r++ {
		for fi, f := range fractions {
			for i := 0; i < 2; i++ { // both slots one pattern behind
				tw.dirty(f.pick)
				if _, err := publish(); err != nil {
					return row, err
				}
			}
			pubs := make([]time.Duration, k)
			bytes := 0
			for i := range pubs {
				tw.dirty(f.pick)
				t0 := time.Now()
				st, err := publish()
				pubs[i] = time.Since(t0)
				if err != nil {
					return row, err
				}
				bytes += st.BytesCopied
			}
			nb := min(bytes/k, len(buf.src))
			run := pubRun{publish: median(pubs), memcpy: timeIt(k, func() { buf.pieces(nb) }), bytes: bytes / k}
			row.runs[fi] = append(row.runs[fi], run)
			fmt.Fprintf(log, "  rep %d  %3d%% dirty  %10d B  publish %10v  memcpy %10v  ratio %.2f\n",
				r+1, f.pct, run.bytes, run.publish, run.memcpy, run.ratio())
		}
	}
	buf = nil

	// Memory: two filtered snapshots held (1 and 2 of the 4 components),
	// then publishes until every slot that is neither the latest, the
	// spare nor held has given its memory back.
	m1, m2 := world.MaskOf(tw.ids[0]), world.MaskOf(tw.ids[0], tw.ids[1])
	var held []int
	for i, m := range []world.Mask{m1, m2} {
		tw.dirty(fractions[1].pick)
		frame++
		s, _, err := pub.Snapshot(frame, m, layout.ModuleSetOf(i))
		if err != nil {
			return row, fmt.Errorf("snapshot: %w", err)
		}
		held = append(held, s)
	}
	pub.SetTrimAfter(1)
	for i := 0; i < pub.Layout().Slots+2; i++ {
		tw.dirty(fractions[1].pick)
		if _, err := publish(); err != nil {
			return row, err
		}
		pub.Trim()
		pub.WaitTrims()
	}
	if row.allocated, err = segs.World.Allocated(); err != nil {
		return row, err
	}
	row.backed = pub.Backed()
	row.ideal = 2*tw.contentBytes(all) + tw.contentBytes(m1) + tw.contentBytes(m2)
	lw := pub.Layout()
	row.old = int64(lw.SlotsOff) + oldSlots*int64(lw.SlotStride)
	row.reserved = int64(lw.TotalSize)
	for i, s := range held {
		if err := pub.ReleaseHolder(s, i); err != nil {
			return row, err
		}
	}
	fmt.Fprintf(log, "  memory: allocated %s, publisher's account %s, ideal %s (%.2fx)\n",
		mib(row.allocated), mib(row.backed), mib(row.ideal), float64(row.allocated)/float64(row.ideal))
	return row, nil
}

// measureScaleAll measures every size up to maxN, releasing each world's
// memory before the next.
func measureScaleAll(maxN, reps int, log io.Writer) ([]scaleRow, error) {
	var rows []scaleRow
	for _, n := range scaleSizes {
		if n > maxN {
			break
		}
		row, err := measureScale(n, reps, log)
		if err != nil {
			return rows, fmt.Errorf("%d entities: %w", n, err)
		}
		rows = append(rows, row)
		runtime.GC()
		debug.FreeOSMemory()
	}
	return rows, nil
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// minMax returns the smallest and largest of f over xs.
func minMax[T any](xs []T, f func(T) float64) (lo, hi float64) {
	for i, x := range xs {
		v := f(x)
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	return lo, hi
}

// medianRun is the repetition with the median ratio.
func medianRun(runs []pubRun) pubRun {
	s := append([]pubRun(nil), runs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].ratio() < s[j-1].ratio(); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

// scaleTable writes the markdown tables of rows.
func scaleTable(w io.Writer, rows []scaleRow, header string) {
	pf := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	pf("%s\n\n", header)
	pf("Publish against a memcpy of the same bytes (in chunk-column pieces, same run; medians of each repetition, the repetition with the median ratio shown, ratio min–max over the repetitions; goal ≤ 1.2×):\n\n")
	pf("| entities | dirty chunks | bytes per publish | publish | memcpy | publish / memcpy |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		for fi, f := range fractions {
			m := medianRun(r.runs[fi])
			lo, hi := minMax(r.runs[fi], pubRun.ratio)
			pf("| %s | %d%% | %s | %v | %v | %.2f–%.2f× |\n", count(r.entities), f.pct, mb(int64(m.bytes)), round(m.publish), round(m.memcpy), lo, hi)
		}
	}
	pf("\nShared memory of the world segment (allocated blocks) with the latest frame, the spare and two held snapshots (masks of 1 and 2 of the 4 components); ideal = 2 × full content + each snapshot's content (content: entity records and the mask's columns over the chunks in use); goal ≤ 1.25× ideal:\n\n")
	pf("| entities | allocated | publisher's account | ideal | allocated / ideal | reserved (address space) | old model (%d slots × whole world) |\n|---|---|---|---|---|---|---|\n", oldSlots)
	for _, r := range rows {
		pf("| %s | %s | %s | %s | %.2f× | %s | %s |\n", count(r.entities), mib(r.allocated), mib(r.backed), mib(r.ideal),
			float64(r.allocated)/float64(r.ideal), mib(r.reserved), mib(r.old))
	}
	pf("\nStart-up to the first frame (segments created, publisher, first publish of the whole world; min–max over the repetitions) and, separately, the world's build (world.New and every entity's creation, once); goal ≤ 1 µs per entity:\n\n")
	pf("| entities | start-up | start-up per entity | world build | build per entity |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		lo, hi := minMax(r.startup, func(d time.Duration) float64 { return float64(d) })
		n := float64(r.entities)
		pf("| %s | %v–%v | %.0f–%.0f ns | %v | %.0f ns |\n", count(r.entities), round(time.Duration(lo)), round(time.Duration(hi)),
			lo/n, hi/n, round(r.build), float64(r.build)/n)
	}
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dK", n/1000)
	}
	return fmt.Sprint(n)
}

func mb(b int64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// round keeps three significant digits.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d.Round(100 * time.Nanosecond)
}
