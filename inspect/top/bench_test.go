package top

import (
	"fmt"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/inspect/fixture"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/shm"
)

// BenchmarkSample is the cost of one refresh's read of an instance with a
// world and 5 module segments (once per --interval, in top's process, none
// in the engine's), against opening, mapping and closing the same 6
// segments in the same run (x-open: the floor of a read that maps module
// segments anew each time, as `engine stat` does too).
func BenchmarkSample(b *testing.B) {
	dir := b.TempDir()
	old := shm.Dir
	shm.Dir = dir
	b.Cleanup(func() { shm.Dir = old })
	c := fixture.Default
	putSeg(b, "fdp.demo.world", fixture.World(c))
	names := []string{"fdp.demo.world"}
	for i := 0; i < 5; i++ {
		m := fixture.Module(c)
		layout.Store32(m, layout.OffMSlot, uint32(i))
		name := fmt.Sprintf("fdp.demo.mod.%d", i)
		putSeg(b, name, m)
		names = append(names, name)
	}
	src := NewSource("demo")
	defer src.Close()
	if n := len(src.Sample(time.Now()).Modules); n != 5 {
		b.Fatalf("%d modules read, want 5", n)
	}
	b.Run("sample", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			src.Sample(time.Now())
		}
	})
	b.Run("x-open", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, n := range names {
				s, err := shm.Open(n, false)
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		}
	})
}
