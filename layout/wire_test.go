package layout

import (
	"errors"
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

func TestAckEventsRoundTrip(t *testing.T) {
	a := AckEvents{Seq: 1<<40 + 3, Pos: 1<<50 + 8, Delivered: 7, Lost: 1<<63 + 1}
	b := make([]byte, AckEventsSize)
	PutAckEvents(b, a)
	got, err := DecodeAckEvents(b)
	if err != nil || got != a {
		t.Fatalf("DecodeAckEvents(PutAckEvents(%+v)) = %+v, %v", a, got, err)
	}
	// The documented byte layout: u64 seq, pos, delivered, lost.
	if b[0] != 3 || b[5] != 1 || b[8] != 8 || b[14] != 4 || b[16] != 7 || b[24] != 1 || b[31] != 0x80 {
		t.Fatalf("layout: % x", b)
	}
	for _, n := range []int{0, AckEventsSize - 8, AckEventsSize + 8} {
		if _, err := DecodeAckEvents(make([]byte, n)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
	if CmdAckEvents < CmdReservedFirst || CmdAckEvents == 0 {
		t.Fatalf("CmdAckEvents %#x outside the reserved record types", CmdAckEvents)
	}
}

// TestExitRefusedIsWire: ExitRefused is protocol between a module process
// and its supervisor (possibly written in another language): EX_CONFIG,
// distinct from a Go panic's 2, a generic failure's 1 and the 128+signal
// statuses of a shell.
func TestExitRefusedIsWire(t *testing.T) {
	if ExitRefused != 78 {
		t.Fatalf("ExitRefused = %d, the wire value is 78 (EX_CONFIG)", ExitRefused)
	}
	for _, other := range []int{0, 1, 2} {
		if ExitRefused == other {
			t.Fatalf("ExitRefused collides with exit status %d", other)
		}
	}
	if ExitRefused > 125 {
		t.Fatalf("ExitRefused %d is in the range shells use for signals", ExitRefused)
	}
}
