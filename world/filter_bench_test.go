package world

import (
	"testing"
	"time"
)

// Tag is a component no entity of the query benchmarks has.
type Tag struct{ V uint64 }

// BenchmarkQueryTerms iterates 100K entities with Position and Velocity (a
// sum of both, read through Column), every 8th with Health, chunks of 1024,
// with a plain With query and with terms, each variant once per iteration
// in the same run (in turn first); the x-with metrics are the fastest pass
// of each variant over the plain query's fastest (the fastest of many
// passes is what the loop costs without the other processes of a shared
// machine):
//   - without-none: Without(Tag), which no entity has (same rows matched:
//     the cost of the term itself);
//   - without-hp: Without(Health), 1/8 of the entities left out;
//   - changed-all: ChangedSince of Position, every chunk written since;
//   - changed-few: the same after writes into 1 chunk in 16: the query
//     visits only those;
//   - optional: Optional(Health), its column read where Has.
func BenchmarkQueryTerms(b *testing.B) {
	const n = 100_000
	r := NewRegistry()
	pos, _ := Register[Position](r, "Position")
	vel, _ := Register[Velocity](r, "Velocity")
	hp, _ := Register[Health](r, "Health")
	tag, _ := Register[Tag](r, "Tag")
	w, err := New(r, Config{ChunkCapacity: 1024, MaxChunks: n/1024 + 1})
	if err != nil {
		b.Fatal(err)
	}
	es := make([]Entity, n)
	for i := range es {
		e, err := w.Create()
		if err != nil {
			b.Fatal(err)
		}
		es[i] = e
		err = Set(w, e, pos, Position{X: float32(i)})
		if err == nil {
			err = Set(w, e, vel, Velocity{X: 1})
		}
		if err == nil && i%8 == 0 {
			err = Set(w, e, hp, Health{HP: 1})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	w.Advance()
	since := w.Version()
	for c := 0; c < w.NumChunks(); c += 16 {
		if p := Ptr[Position](w, es[c*w.ChunkCapacity()], pos); p != nil {
			p.Y++
		}
	}
	with := MaskOf(pos, vel)
	variants := []struct {
		name  string
		terms []Term
	}{
		{"with", nil},
		{"without-none", []Term{Without(tag)}},
		{"without-hp", []Term{Without(hp)}},
		{"changed-all", []Term{ChangedSince(1, pos)}},
		{"changed-few", []Term{ChangedSince(since, pos)}},
		{"optional", []Term{Optional(hp)}},
	}
	durs := make([]time.Duration, len(variants))
	fastest := make([]time.Duration, len(variants)) // of each variant's passes: robust to a shared machine's noise
	var sum float32
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each iteration starts with another variant: none always
		// runs after the same one (caches, frequency).
		for r := range variants {
			k := (i + r) % len(variants)
			v := variants[k]
			start := time.Now()
			q := w.Query(with, v.terms...)
			for q.Next() {
				p := Column[Position](&q, pos)
				vl := Column[Velocity](&q, vel)
				if v.name != "optional" {
					for j, rows := 0, q.Rows(); j < rows; j++ {
						if q.Match(j) {
							sum += p[j].X + vl[j].X
						}
					}
					continue
				}
				h := Column[Health](&q, hp)
				for j, rows := 0, q.Rows(); j < rows; j++ {
					if q.Match(j) {
						sum += p[j].X + vl[j].X
						if h != nil && q.Has(j, hp) {
							sum += float32(h[j].HP)
						}
					}
				}
			}
			d := time.Since(start)
			durs[k] += d
			if fastest[k] == 0 || d < fastest[k] {
				fastest[k] = d
			}
		}
	}
	b.StopTimer()
	for k, v := range variants {
		b.ReportMetric(float64(durs[k].Nanoseconds())/float64(b.N)/n, v.name+"-ns/entity")
		b.ReportMetric(float64(fastest[k].Nanoseconds())/n, v.name+"-fastest-ns/entity")
		if k > 0 {
			b.ReportMetric(float64(fastest[k])/float64(fastest[0]), v.name+"-x-with")
		}
	}
	_ = sum
}
