// Command plot measures publish time against the fraction of dirty chunks
// (100K entities, 4 components, 64 B per entity) next to a memcpy of the same
// bytes, in one run, and draws docs/publish.png. Run it with `make plot`.
package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fdp-engine/fdp/shm"
	fsync "github.com/fdp-engine/fdp/sync"
	"github.com/fdp-engine/fdp/world"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

type vec4 struct{ A, B, C, D float32 }

// The four components share a layout but are distinct types, as the
// registry requires.
type (
	compA vec4
	compB vec4
	compC vec4
	compD vec4
)

type point struct {
	pct            int
	publish, memcp time.Duration
	bytes          int
}

func main() {
	out := "docs/publish.png"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	pts, err := measure()
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	for _, p := range pts {
		fmt.Printf("dirty %3d%%  bytes %8d  publish %8v  memcpy %8v  ratio %.2f\n", p.pct, p.bytes, p.publish, p.memcp, float64(p.publish)/float64(p.memcp))
	}
	if err := draw(out, pts); err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	fmt.Println("wrote", out)
}

func measure() ([]point, error) {
	dir, err := os.MkdirTemp("", "fdp-plot")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	shm.Dir = dir
	reg := world.NewRegistry()
	var ids [4]world.ComponentID
	regs := []func() (world.ComponentID, error){
		func() (world.ComponentID, error) { return world.Register[compA](reg, "A") },
		func() (world.ComponentID, error) { return world.Register[compB](reg, "B") },
		func() (world.ComponentID, error) { return world.Register[compC](reg, "C") },
		func() (world.ComponentID, error) { return world.Register[compD](reg, "D") },
	}
	for i, r := range regs {
		if ids[i], err = r(); err != nil {
			return nil, err
		}
	}
	w, err := world.New(reg, world.Config{ChunkCapacity: 1024, MaxChunks: 128})
	if err != nil {
		return nil, err
	}
	for i := 0; i < 100_000; i++ {
		e, err := w.Create()
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if err := world.Set(w, e, id, vec4{A: float32(i)}); err != nil {
				return nil, err
			}
		}
	}
	segs, err := fsync.CreateWorldSegments("plot", w, 0)
	if err != nil {
		return nil, err
	}
	defer func() { segs.Unlink(); segs.Close() }()
	pub, err := fsync.NewPublisher(w, segs)
	if err != nil {
		return nil, err
	}
	all := world.MaskAll()
	frame := uint64(0)
	dirty := func(tenths int) {
		w.Advance()
		q := w.Query(world.MaskOf(ids[:]...))
		for q.Next() {
			if q.Chunk()%10 < tenths {
				for _, id := range ids {
					world.ColumnMut[vec4](&q, id)[0].A++
				}
			}
		}
	}
	for i := 0; i < 12; i++ { // warm every slot
		dirty(10)
		frame++
		if _, err := pub.Publish(frame, all); err != nil {
			return nil, err
		}
	}
	var pts []point
	for tenths := 1; tenths <= 10; tenths++ {
		var pubs, cps []time.Duration
		bytes := 0
		for i := 0; i < 31; i++ {
			dirty(tenths)
			frame++
			t0 := time.Now()
			st, err := pub.Publish(frame, all)
			pubs = append(pubs, time.Since(t0))
			if err != nil {
				return nil, err
			}
			bytes = st.BytesCopied
		}
		// Fill the source: untouched pages all map the kernel's zero page,
		// which would make the baseline unrealistically fast.
		src := make([]byte, bytes)
		for i := range src {
			src[i] = byte(i)
		}
		dst := make([]byte, bytes+4096)[1024:][:bytes]
		copy(dst, src)
		for i := 0; i < 31; i++ {
			t0 := time.Now()
			copy(dst, src)
			cps = append(cps, time.Since(t0))
		}
		pts = append(pts, point{pct: tenths * 10, publish: median(pubs), memcp: median(cps), bytes: bytes})
	}
	return pts, nil
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

const (
	width, height         = 800, 500
	left, right, top, bot = 80, 30, 50, 60
)

func draw(path string, pts []point) error {
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	white := color.RGBA{255, 255, 255, 255}
	for y := 0; y < height; y++ {
		for x := 0; x < width; x++ {
			img.Set(x, y, white)
		}
	}
	var maxT time.Duration
	for _, p := range pts {
		maxT = max(maxT, p.publish, p.memcp)
	}
	maxT = maxT * 11 / 10
	px := func(pct int) int { return left + (width-left-right)*pct/100 }
	py := func(d time.Duration) int { return height - bot - int(float64(height-top-bot)*float64(d)/float64(maxT)) }
	black := color.RGBA{0, 0, 0, 255}
	grey := color.RGBA{200, 200, 200, 255}
	line(img, left, height-bot, width-right, height-bot, black)
	line(img, left, top, left, height-bot, black)
	for i := 0; i <= 5; i++ {
		d := maxT * time.Duration(i) / 5
		y := py(d)
		line(img, left, y, width-right, y, grey)
		text(img, 8, y+4, fmt.Sprintf("%4d us", d.Microseconds()), black)
	}
	for pct := 0; pct <= 100; pct += 10 {
		text(img, px(pct)-10, height-bot+18, fmt.Sprintf("%d%%", pct), black)
	}
	text(img, width/2-90, height-15, "dirty chunks (fraction of 100K entities)", black)
	text(img, left, 25, "FDP publish time vs memcpy of the same bytes (median of 31, one run)", black)
	blue := color.RGBA{30, 90, 200, 255}
	red := color.RGBA{200, 60, 40, 255}
	series := func(get func(point) time.Duration, c color.RGBA) {
		for i := 1; i < len(pts); i++ {
			line(img, px(pts[i-1].pct), py(get(pts[i-1])), px(pts[i].pct), py(get(pts[i])), c)
			line(img, px(pts[i-1].pct), py(get(pts[i-1]))+1, px(pts[i].pct), py(get(pts[i]))+1, c)
		}
		for _, p := range pts {
			dot(img, px(p.pct), py(get(p)), c)
		}
	}
	series(func(p point) time.Duration { return p.publish }, blue)
	series(func(p point) time.Duration { return p.memcp }, red)
	text(img, left+20, top+15, "publish (dirty chunk columns into a frame slot)", blue)
	text(img, left+20, top+32, "memcpy of the same number of bytes", red)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return png.Encode(f, img)
}

func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.Set(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func dot(img *image.RGBA, x, y int, c color.RGBA) {
	for i := -3; i <= 3; i++ {
		for j := -3; j <= 3; j++ {
			if i*i+j*j <= 9 {
				img.Set(x+i, y+j, c)
			}
		}
	}
}

func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}
