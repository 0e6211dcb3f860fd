package world

import (
	"testing"
	"time"
)

func benchWorld(b *testing.B, n int) (*fixture, []Entity) {
	f := newFixture(b, 1024, (n+1023)/1024)
	es := make([]Entity, 0, n)
	for i := 0; i < n; i++ {
		e, err := f.w.Create()
		if err != nil {
			b.Fatal(err)
		}
		if err := Set(f.w, e, f.pos, Position{X: float32(i)}); err != nil {
			b.Fatal(err)
		}
		if err := Set(f.w, e, f.vel, Velocity{X: 1, Y: 2}); err != nil {
			b.Fatal(err)
		}
		es = append(es, e)
	}
	return f, es
}

// BenchmarkQueryIterate moves 100K entities (Position += Velocity, two
// components). The baseline is a plain loop over two Go slices of the same
// structs, timed over the same number of iterations in the same run;
// "x-baseline" is the ratio (query time / baseline time).
func BenchmarkQueryIterate(b *testing.B) {
	const n = 100_000
	f, _ := benchWorld(b, n)
	w := f.w
	mask := MaskOf(f.pos, f.vel)

	pos := make([]Position, n)
	vel := make([]Velocity, n)
	for i := range vel {
		vel[i] = Velocity{X: 1, Y: 2}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		q := w.Query(mask)
		for q.Next() {
			p := ColumnMut[Position](&q, f.pos)
			v := Column[Velocity](&q, f.vel)
			for j, rows := 0, q.Rows(); j < rows; j++ {
				if !q.Match(j) {
					continue
				}
				p[j].X += v[j].X
				p[j].Y += v[j].Y
			}
		}
	}
	query := time.Since(start)
	b.StopTimer()
	start = time.Now()
	for i := 0; i < b.N; i++ {
		for j := range pos {
			pos[j].X += vel[j].X
			pos[j].Y += vel[j].Y
		}
	}
	base := time.Since(start)
	b.ReportMetric(float64(query.Nanoseconds())/float64(b.N)/n, "ns/entity")
	if base > 0 {
		b.ReportMetric(float64(query)/float64(base), "x-baseline")
	}
}

// BenchmarkSet writes one component of random-ish entities by handle.
func BenchmarkSet(b *testing.B) {
	const n = 100_000
	f, es := benchWorld(b, n)
	w := f.w
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := es[(i*7919)%n]
		if err := Set(w, e, f.pos, Position{X: float32(i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet reads one component by handle.
func BenchmarkGet(b *testing.B) {
	const n = 100_000
	f, es := benchWorld(b, n)
	w := f.w
	var sum float32
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, _ := Get[Position](w, es[(i*7919)%n], f.pos)
		sum += p.X
	}
	if sum < 0 {
		b.Fatal("impossible")
	}
}

// BenchmarkCreateDestroy measures entity churn with two components.
func BenchmarkCreateDestroy(b *testing.B) {
	f, es := benchWorld(b, 10_000)
	w := f.w
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(es)
		if err := w.Destroy(es[j]); err != nil {
			b.Fatal(err)
		}
		e, err := w.Create()
		if err != nil {
			b.Fatal(err)
		}
		_ = Set(w, e, f.pos, Position{})
		es[j] = e
	}
}
