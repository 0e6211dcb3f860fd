package module

import "testing"

// TestRejectionsSince: the difference of two reads is what was applied and
// rejected in between, by reason; a read of another engine (lower counters)
// is taken whole.
func TestRejectionsSince(t *testing.T) {
	a := Rejections{Frame: 10, Applied: 5, Rejected: 3, ByReason: map[string]uint64{"stale_entity": 2, "unknown_component": 1}}
	b := Rejections{Frame: 20, Applied: 9, Rejected: 6, ByReason: map[string]uint64{"stale_entity": 4, "unknown_component": 1, "world_full": 1}}
	d := b.Since(a)
	if d.Applied != 4 || d.Rejected != 3 || len(d.ByReason) != 2 || d.ByReason["stale_entity"] != 2 || d.ByReason["world_full"] != 1 {
		t.Fatalf("Since: %+v", d)
	}
	if got, want := d.String(), "rejected 3 (stale_entity 2, world_full 1) of 7"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	if got := a.Since(b); got.Rejected != a.Rejected || got.Applied != a.Applied {
		t.Fatalf("another engine's read: %+v", got)
	}
	if got := (Rejections{Applied: 2}).String(); got != "rejected 0 of 2" {
		t.Fatalf("none: %q", got)
	}
}
