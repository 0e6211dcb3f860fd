package layout

import (
	"testing"
	"time"
)

func TestTickWordRoundTrip(t *testing.T) {
	for _, c := range []struct {
		slot int
		dt   time.Duration
	}{{-1, 0}, {-1, 16 * time.Millisecond}, {0, time.Microsecond}, {TickMaxSlot, time.Hour}, {3, 100 * time.Millisecond}} {
		s, dt := UnpackTick(PackTick(c.slot, c.dt))
		if s != c.slot || dt != c.dt {
			t.Fatalf("PackTick(%d, %v) unpacks to (%d, %v)", c.slot, c.dt, s, dt)
		}
	}
	if s, dt := UnpackTick(PackTick(2, -time.Second)); s != 2 || dt != 0 {
		t.Fatalf("negative dt: (%d, %v)", s, dt)
	}
	// A zero word (a fresh module segment) names no slot.
	if s, _ := UnpackTick(0); s != -1 {
		t.Fatalf("zero word names slot %d", s)
	}
}

func TestDoneFrame(t *testing.T) {
	if f, failed := DoneFrame(42 | DoneFailed); f != 42 || !failed {
		t.Fatalf("DoneFrame(42|failed) = %d, %v", f, failed)
	}
	if f, failed := DoneFrame(42); f != 42 || failed {
		t.Fatalf("DoneFrame(42) = %d, %v", f, failed)
	}
}

func TestSystemEventRange(t *testing.T) {
	for _, c := range []struct {
		typ  uint16
		want bool
	}{{0, false}, {1, false}, {0xFEFF, false}, {SystemEventFirst, true}, {0xFF01, true}, {SystemEventCreated, true}} {
		if got := IsSystemEvent(c.typ); got != c.want {
			t.Fatalf("IsSystemEvent(%#x) = %v", c.typ, got)
		}
	}
}
