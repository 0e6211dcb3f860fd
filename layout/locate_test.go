package layout

import (
	"fmt"
	"testing"
)

// TestLocate: every byte of every column, record table and header of a
// world segment is named by Locate as what the geometry's own ranges say
// it is (an independent walk over ColumnRange and EntityRange).
func TestLocate(t *testing.T) {
	g, err := ComputeWorldGeometry(WorldParams{Instance: "t", Slots: 3, ChunkCapacity: 64, MaxChunks: 4, Components: testComponents()})
	if err != nil {
		t.Fatal(err)
	}
	for s := 0; s < g.Slots; s++ {
		for c := 0; c < g.MaxChunks; c++ {
			for k, comp := range g.Components {
				o, e := g.ColumnRange(s, c, k)
				want := fmt.Sprintf("component %q (column of chunk %d, slot %d)", comp.Name, c, s)
				for _, off := range []int{o, (o + e) / 2, e - 1} {
					if got := g.Locate(off); got != want {
						t.Fatalf("Locate(%d) = %q, want %q", off, got, want)
					}
				}
			}
			o, e := g.EntityRange(s, c)
			if got, want := g.Locate(e-1), fmt.Sprintf("entity records of chunk %d, slot %d", c, s); got != want || g.Locate(o) != want {
				t.Fatalf("records: %q, want %q", got, want)
			}
		}
		if got, want := g.Locate(g.SlotOff(s)), fmt.Sprintf("slot header of slot %d", s); got != want {
			t.Fatalf("slot header: %q", got)
		}
	}
	for off, want := range map[int]string{0: "the segment header", g.ComponentsOff: "the component table", -1: "beyond the segment", g.TotalSize: "beyond the segment"} {
		if got := g.Locate(off); got != want {
			t.Fatalf("Locate(%d) = %q, want %q", off, got, want)
		}
	}
}
