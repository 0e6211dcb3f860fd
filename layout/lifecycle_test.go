package layout

import (
	"errors"
	"testing"
)

func TestLifecycleTypes(t *testing.T) {
	for k := range NumLifecycleKinds {
		typ := k.Event()
		if got, ok := typ.Kind(); !ok || got != k {
			t.Fatalf("%s: event %#04x has kind %v, %v", k, uint16(typ), got, ok)
		}
		if !IsSystemEvent(uint16(typ)) || !IsLifecycleEvent(uint16(typ)) || !ValidWakeEvent(uint16(typ)) {
			t.Fatalf("%s: event %#04x must be a reserved lifecycle type a module may wake on", k, uint16(typ))
		}
		if typ.String() != k.String() {
			t.Fatalf("%s: String %q", k, typ.String())
		}
	}
	want := map[LifecycleEvent]string{EventCreated: "created", EventDestroyed: "destroyed", EventAdded: "added", EventRemoved: "removed",
		0xFF14: "event(0xff14)", 2: "event(0x0002)"}
	for typ, s := range want {
		if typ.String() != s {
			t.Fatalf("%#04x: %q, want %q", uint16(typ), typ.String(), s)
		}
	}
	if LifecycleKind(9).String() != "lifecycle(9)" {
		t.Fatal(LifecycleKind(9).String())
	}
	for _, typ := range []uint16{SystemEventCreated, SystemEventFirst, 0xFF0F, 0xFF14} {
		if IsLifecycleEvent(typ) || ValidWakeEvent(typ) {
			t.Fatalf("%#04x: a system event that is not a lifecycle type", typ)
		}
	}
	if !ValidWakeEvent(0) || !ValidWakeEvent(SystemEventFirst-1) {
		t.Fatal("user event types are valid wake events")
	}
}

func TestLifecyclePayloadRoundTrip(t *testing.T) {
	for k := range NumLifecycleKinds {
		var b [LifecycleComponentSize]byte
		n := PutLifecycle(b[:], k, 7<<32|12, 0x1234)
		if n != k.PayloadSize() {
			t.Fatalf("%s: %d bytes, want %d", k, n, k.PayloadSize())
		}
		gk, e, c, err := DecodeLifecycle(uint16(k.Event()), b[:n])
		want := uint16(0)
		if k.HasComponent() {
			want = 0x1234
		}
		if err != nil || gk != k || e != 7<<32|12 || c != want {
			t.Fatalf("%s: decoded %v %#x %#x %v", k, gk, e, c, err)
		}
		if _, _, _, err := DecodeLifecycle(uint16(k.Event()), b[:n-1]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: short payload: %v", k, err)
		}
		if k.HasComponent() {
			b[13] = 1
			if _, _, _, err := DecodeLifecycle(uint16(k.Event()), b[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: reserved bytes: %v", k, err)
			}
		}
	}
	if _, _, _, err := DecodeLifecycle(3, make([]byte, 8)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("not a lifecycle type: %v", err)
	}
}

// FuzzDecodeLifecycle: any type and payload decode without a panic, and a
// payload that decodes encodes back to the same bytes.
func FuzzDecodeLifecycle(f *testing.F) {
	f.Add(uint16(EventAdded), []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint16(EventCreated), []byte{1, 0, 0, 0, 1, 0, 0, 0})
	f.Add(uint16(3), []byte{})
	f.Fuzz(func(t *testing.T, typ uint16, p []byte) {
		k, e, c, err := DecodeLifecycle(typ, p)
		if err != nil {
			return
		}
		var b [LifecycleComponentSize]byte
		n := PutLifecycle(b[:], k, e, c)
		if string(b[:n]) != string(p) {
			t.Fatalf("%s: %x encodes back as %x", k, p, b[:n])
		}
	})
}
