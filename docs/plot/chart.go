package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"
	"path/filepath"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	black  = color.RGBA{0, 0, 0, 255}
	grey   = color.RGBA{210, 210, 210, 255}
	blue   = color.RGBA{30, 90, 200, 255}
	red    = color.RGBA{200, 60, 40, 255}
	green  = color.RGBA{40, 150, 60, 255}
	orange = color.RGBA{230, 140, 20, 255}
	purple = color.RGBA{130, 60, 170, 255}
)

// newCanvas returns a white image.
func newCanvas(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	return img
}

func savePNG(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// panel is a chart in the rectangle r of an image: x and y ranges, each
// linear or logarithmic (base 10).
type panel struct {
	img            *image.RGBA
	r              image.Rectangle // the plotting area, inside the margins
	x0, x1, y0, y1 float64
	logX, logY     bool
	title, xl, yl  string
	legend         int // lines of legend drawn so far
}

// newPanel places a panel in the cell [x, x+w) × [y, y+h) of img.
func newPanel(img *image.RGBA, x, y, w, h int) *panel {
	return &panel{img: img, r: image.Rect(x+70, y+40, x+w-20, y+h-45)}
}

func (p *panel) scale(v, lo, hi float64, log bool) float64 {
	if log {
		v, lo, hi = math.Log10(v), math.Log10(lo), math.Log10(hi)
	}
	return (v - lo) / (hi - lo)
}

func (p *panel) px(x float64) int {
	return p.r.Min.X + int(float64(p.r.Dx())*p.scale(x, p.x0, p.x1, p.logX))
}

func (p *panel) py(y float64) int {
	return p.r.Max.Y - int(float64(p.r.Dy())*p.scale(y, p.y0, p.y1, p.logY))
}

// axes draws the frame, the title, the axis labels, the x ticks (at xs,
// labelled by xlabel) and the y ticks (at ys, labelled by ylabel), with
// grid lines.
func (p *panel) axes(xs []float64, xlabel func(float64) string, ys []float64, ylabel func(float64) string) {
	for _, y := range ys {
		line(p.img, p.r.Min.X, p.py(y), p.r.Max.X, p.py(y), grey)
		s := ylabel(y)
		text(p.img, p.r.Min.X-7*len(s)-6, p.py(y)+4, s, black)
	}
	for _, x := range xs {
		line(p.img, p.px(x), p.r.Min.Y, p.px(x), p.r.Max.Y, grey)
		s := xlabel(x)
		text(p.img, p.px(x)-7*len(s)/2, p.r.Max.Y+16, s, black)
	}
	line(p.img, p.r.Min.X, p.r.Max.Y, p.r.Max.X, p.r.Max.Y, black)
	line(p.img, p.r.Min.X, p.r.Min.Y, p.r.Min.X, p.r.Max.Y, black)
	text(p.img, p.r.Min.X-60, p.r.Min.Y-25, p.title, black)
	text(p.img, p.r.Min.X+p.r.Dx()/2-7*len(p.xl)/2, p.r.Max.Y+36, p.xl, black)
	text(p.img, p.r.Min.X-60, p.r.Min.Y-8, p.yl, black)
}

// series draws the points (xs[i], ys[i]) joined by lines, with round dots,
// or square ones and a thin line when dashed, and adds name to the legend.
func (p *panel) series(name string, xs, ys []float64, c color.RGBA, dashed bool) {
	for i := range xs {
		if i > 0 {
			x0, y0, x1, y1 := p.px(xs[i-1]), p.py(ys[i-1]), p.px(xs[i]), p.py(ys[i])
			if dashed {
				dashLine(p.img, x0, y0, x1, y1, c)
			} else {
				line(p.img, x0, y0, x1, y1, c)
				line(p.img, x0, y0+1, x1, y1+1, c)
			}
		}
		if dashed {
			square(p.img, p.px(xs[i]), p.py(ys[i]), c)
		} else {
			dot(p.img, p.px(xs[i]), p.py(ys[i]), c)
		}
	}
	y := p.r.Min.Y + 14 + 15*p.legend
	if dashed {
		dashLine(p.img, p.r.Min.X+8, y-4, p.r.Min.X+28, y-4, c)
	} else {
		line(p.img, p.r.Min.X+8, y-4, p.r.Min.X+28, y-4, c)
		line(p.img, p.r.Min.X+8, y-3, p.r.Min.X+28, y-3, c)
	}
	text(p.img, p.r.Min.X+34, y, name, c)
	p.legend++
}

// decades returns the powers of ten in [lo, hi].
func decades(lo, hi float64) []float64 {
	var out []float64
	for v := math.Pow(10, math.Ceil(math.Log10(lo))); v <= hi*1.0001; v *= 10 {
		out = append(out, v)
	}
	return out
}

// logRange widens [lo, hi] to whole decades.
func logRange(lo, hi float64) (float64, float64) {
	return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
}

// durLabel labels a number of nanoseconds.
func durLabel(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%gs", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%gms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%gus", ns/1e3)
	}
	return fmt.Sprintf("%gns", ns)
}

// bytesLabel labels a number of bytes.
func bytesLabel(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%gG", math.Round(b/(1<<30)*10)/10)
	case b >= 1<<20:
		return fmt.Sprintf("%gM", math.Round(b/(1<<20)*10)/10)
	}
	return fmt.Sprintf("%gK", math.Round(b/(1<<10)))
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

// dashLine draws a line of 6-pixel dashes.
func dashLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	n := max(abs(x1-x0), abs(y1-y0))
	for i := 0; i <= n; i++ {
		if i%12 < 6 && n > 0 {
			img.Set(x0+(x1-x0)*i/n, y0+(y1-y0)*i/n, c)
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

func square(img *image.RGBA, x, y int, c color.RGBA) {
	for i := -3; i <= 3; i++ {
		for j := -3; j <= 3; j++ {
			if abs(i) == 3 || abs(j) == 3 {
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
