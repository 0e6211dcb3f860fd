package main

import (
	"fmt"
	"io"
	"time"

	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
)

// fracPoint is one point of docs/publish.png.
type fracPoint struct {
	pct            int
	publish, memcp time.Duration
	bytes          int
}

// measureFractions publishes 100K entities with 10%, 20%, ... 100% of the
// chunks dirty, each against a memcpy of the same bytes (medians of 31).
func measureFractions(log io.Writer) ([]fracPoint, error) {
	tw, err := newTestWorld(100_000)
	if err != nil {
		return nil, err
	}
	segs, err := tw.createSegments()
	if err != nil {
		return nil, err
	}
	defer dropSegments(segs)
	pub, err := fsync.NewPublisher(tw.w, segs)
	if err != nil {
		return nil, err
	}
	all := world.MaskAll()
	frame := uint64(0)
	buf := newCopyBuffers(int(tw.contentBytes(all)))
	var pts []fracPoint
	for tenths := 1; tenths <= 10; tenths++ {
		pick := func(c int) bool { return c%10 < tenths }
		for i := 0; i < 3; i++ { // both slots one pattern behind
			tw.dirty(pick)
			frame++
			if _, err := pub.Publish(frame, all); err != nil {
				return nil, err
			}
		}
		pubs := make([]time.Duration, 31)
		bytes := 0
		for i := range pubs {
			tw.dirty(pick)
			frame++
			t0 := time.Now()
			st, err := pub.Publish(frame, all)
			pubs[i] = time.Since(t0)
			if err != nil {
				return nil, err
			}
			bytes += st.BytesCopied
		}
		nb := min(bytes/len(pubs), len(buf.src))
		p := fracPoint{pct: tenths * 10, publish: median(pubs), memcp: timeIt(31, func() { buf.pieces(nb) }), bytes: nb}
		fmt.Fprintf(log, "dirty %3d%%  bytes %8d  publish %8v  memcpy %8v  ratio %.2f\n", p.pct, p.bytes, p.publish, p.memcp, float64(p.publish)/float64(p.memcp))
		pts = append(pts, p)
	}
	return pts, nil
}

// drawFractions draws docs/publish.png.
func drawFractions(path string, pts []fracPoint) error {
	img := newCanvas(800, 500)
	p := newPanel(img, 0, 10, 800, 490)
	p.title = "FDP publish time vs memcpy of the same bytes (100K entities, median of 31, one run)"
	p.xl, p.yl = "dirty chunks (fraction of 100K entities)", "time per publish"
	var xs, pubs, cps []float64
	for _, q := range pts {
		xs = append(xs, float64(q.pct))
		pubs = append(pubs, float64(q.publish))
		cps = append(cps, float64(q.memcp))
		p.y1 = max(p.y1, float64(q.publish), float64(q.memcp))
	}
	p.x0, p.x1, p.y1 = 0, 100, p.y1*1.1
	var xt, yt []float64
	for x := 0.0; x <= 100; x += 10 {
		xt = append(xt, x)
	}
	for i := 0; i <= 5; i++ {
		yt = append(yt, p.y1*float64(i)/5)
	}
	p.axes(xt, func(x float64) string { return fmt.Sprintf("%g%%", x) }, yt,
		func(y float64) string { return fmt.Sprintf("%dus", int(y/1e3)) })
	p.series("publish (dirty chunk columns into a frame slot)", xs, pubs, blue, false)
	p.series("memcpy of the same number of bytes (chunk-column pieces)", xs, cps, red, true)
	return savePNG(path, img)
}
