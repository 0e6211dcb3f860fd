package main

import (
	"fmt"
	"image/color"
	"math"
)

// drawScale draws docs/scale.png: three panels against the entity count,
// (a) publish and memcpy time, (b) shared memory, (c) start-up per entity.
func drawScale(path string, rows []scaleRow) error {
	const cellW, cellH = 560, 520
	img := newCanvas(3*cellW, cellH+30)
	text(img, 20, 20, "FDP at scale: 4 components of 16 B per entity, chunks of 1024 entities; one run, median of each measurement", black)
	xs := make([]float64, len(rows))
	for i, r := range rows {
		xs[i] = float64(r.entities)
	}
	xlabel := func(x float64) string { return count(int(x)) }
	setX := func(p *panel) {
		p.x0, p.x1, p.logX = xs[0]/1.3, xs[len(xs)-1]*1.3, true
		p.xl = "entities (log)"
	}

	// (a) Publish time and the memcpy of the same bytes.
	a := newPanel(img, 0, 30, cellW, cellH)
	setX(a)
	a.title, a.yl, a.logY = "(a) publish vs memcpy of the same bytes", "time per publish (log)", true
	lo, hi := math.Inf(1), 0.0
	pubs := make([][]float64, len(fractions))
	cps := make([][]float64, len(fractions))
	for fi := range fractions {
		for _, r := range rows {
			m := medianRun(r.runs[fi])
			pubs[fi] = append(pubs[fi], float64(m.publish))
			cps[fi] = append(cps[fi], float64(m.memcpy))
			lo, hi = min(lo, float64(m.publish), float64(m.memcpy)), max(hi, float64(m.publish), float64(m.memcpy))
		}
	}
	a.y0, a.y1 = logRange(lo, hi)
	a.axes(xs, xlabel, decades(a.y0, a.y1), durLabel)
	colors := []color.RGBA{blue, orange, red} // per fraction
	for fi, f := range fractions {
		a.series(fmt.Sprintf("publish, %d%% of chunks dirty", f.pct), xs, pubs[fi], colors[fi], false)
	}
	for fi, f := range fractions {
		a.series(fmt.Sprintf("memcpy of its bytes (%d%%)", f.pct), xs, cps[fi], colors[fi], true)
	}

	// (b) Shared memory.
	b := newPanel(img, cellW, 30, cellW, cellH)
	setX(b)
	b.title, b.yl, b.logY = "(b) shared memory: latest + spare + 2 snapshots", "bytes (log)", true
	var alloc, ideal, old []float64
	lo, hi = math.Inf(1), 0.0
	for _, r := range rows {
		alloc = append(alloc, float64(r.allocated))
		ideal = append(ideal, float64(r.ideal))
		old = append(old, float64(r.old))
		lo, hi = min(lo, float64(r.allocated), float64(r.ideal)), max(hi, float64(r.old))
	}
	b.y0, b.y1 = logRange(lo, hi)
	var ticks []float64
	for v := float64(1 << 20); v <= b.y1; v *= 8 {
		if v >= b.y0 {
			ticks = append(ticks, v)
		}
	}
	b.axes(xs, xlabel, ticks, bytesLabel)
	b.series("allocated blocks of the world segment", xs, alloc, blue, false)
	b.series("ideal: 2 x full content + snapshots' content", xs, ideal, green, true)
	b.series(fmt.Sprintf("old model: %d slots x whole world", oldSlots), xs, old, red, true)

	// (c) Start-up per entity.
	c := newPanel(img, 2*cellW, 30, cellW, cellH)
	setX(c)
	c.title, c.yl = "(c) start-up to the first frame, per entity", "ns per entity"
	var start, build []float64
	hi = 1000
	for _, r := range rows {
		s := float64(median(r.startup)) / float64(r.entities)
		bd := float64(r.build) / float64(r.entities)
		start = append(start, s)
		build = append(build, bd)
		hi = max(hi, s, bd)
	}
	step := 250.0
	if hi > 2000 {
		step = 500
	}
	c.y0, c.y1 = 0, math.Ceil(hi*1.1/step)*step
	var cticks []float64
	for v := 0.0; v <= c.y1; v += step {
		cticks = append(cticks, v)
	}
	c.axes(xs, xlabel, cticks, func(v float64) string { return fmt.Sprintf("%g", v) })
	c.series("segments + first publish (median)", xs, start, blue, false)
	c.series("world build (separate, not start-up)", xs, build, purple, true)
	c.series("goal: 1 us per entity", []float64{xs[0] / 1.3, xs[len(xs)-1] * 1.3}, []float64{1000, 1000}, green, true)
	return savePNG(path, img)
}
