package module

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fdp-engine/fdp/ipc"
	"github.com/fdp-engine/fdp/layout"
	"github.com/fdp-engine/fdp/world"
)

// observing is a module with a spec and observers registered by observe.
type observing struct {
	specOnly
	observe func(o *Observers)
}

func (m observing) Observe(o *Observers) { m.observe(o) }

// TestRunRefusesBadSubscriptions: observers and a WakeOn the engine would
// refuse are refused by Run at once (ErrInvalidSpec wrapping
// ipc.ErrBadHello, a permanent refusal) with the reason; valid ones (Every
// 0 with a WakeOn among them) go on to look for the engine.
func TestRunRefusesBadSubscriptions(t *testing.T) {
	reg := world.NewRegistry()
	pos, _ := world.Register[[2]float32](reg, "Pos")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opt := Options{Instance: fmt.Sprintf("nosuch%d", time.Now().UnixNano()%1e9), Registry: reg, Logger: log,
		AttachTimeout: 200 * time.Millisecond, RejoinTimeout: -1}
	none := func(*Observers) {}
	for _, c := range []struct {
		name    string
		spec    Spec
		observe func(o *Observers)
		want    string // "": not refused
	}{
		{"wake on a fast module", Spec{Name: "m", Tier: Fast, Every: 1, WakeOn: WakeOn{Events: []world.EventType{2}}}, none,
			`wake_on is for slow modules, the tier is "fast"`},
		{"wake on a created notice", Spec{Name: "m", Tier: Slow, WakeOn: WakeOn{Events: []world.EventType{world.EventType(layout.SystemEventCreated)}}}, none,
			"event type 0xffff is reserved for the engine"},
		{"wake on a type twice", Spec{Name: "m", Tier: Slow, WakeOn: WakeOn{Events: []world.EventType{2, 2}}}, none, "event type 2 named twice"},
		{"wake on a component beyond the registry", Spec{Name: "m", Tier: Slow, WakeOn: WakeOn{Components: world.MaskOf(3)}}, none,
			"invalid module spec: observers or WakeOn name component 3, beyond the registry's 1 (invalid hello)"},
		{"wake on component 200", Spec{Name: "m", Tier: Slow, WakeOn: WakeOn{Components: world.MaskOf(200)}}, none,
			"invalid module spec: observers or WakeOn name component 200, beyond the registry's 1 (invalid hello)"},
		{"observer beyond the registry", Spec{Name: "m", Tier: Fast, Every: 1},
			func(o *Observers) { o.OnRemoved(5, func(world.Entity) {}); o.OnAdded(9, func(world.Entity) {}) },
			"invalid module spec: observers or WakeOn name components 5, 9, beyond the registry's 1 (invalid hello)"},
		{"every 0 with a wake", Spec{Name: "m", Tier: Slow, WakeOn: WakeOn{Events: []world.EventType{world.EventDestroyed}}}, none, ""},
		{"observers", Spec{Name: "m", Tier: Fast, Every: 1},
			func(o *Observers) { o.OnAdded(pos, func(world.Entity) {}); o.OnCreated(func(world.Entity) {}) }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := Run(context.Background(), observing{specOnly{c.spec}, c.observe}, opt)
			if c.want == "" {
				if err == nil || errors.Is(err, ErrInvalidSpec) || Refused(err) {
					t.Fatalf("Run: %v, want the wait for a missing engine to fail", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) || !errors.Is(err, ipc.ErrBadHello) || !Refused(err) {
				t.Fatalf("Run: %v, want ErrInvalidSpec wrapping ipc.ErrBadHello", err)
			}
			if strings.HasPrefix(c.want, ErrInvalidSpec.Error()) && err.Error() != c.want {
				t.Fatalf("Run: %q, want exactly %q", err, c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run: %v, want the reason %q", err, c.want)
			}
		})
	}
}

// TestSubscription: the hello's subscription is the observers' kinds and
// components, and the lifecycle types the module wakes on, for every
// component.
func TestSubscription(t *testing.T) {
	var o Observers
	o.OnAdded(1, func(world.Entity) {})
	o.OnRemoved(2, func(world.Entity) {})
	o.OnRemoved(2, func(world.Entity) {})
	all := world.MaskOf(0, 1, 2, 3)
	got := subscription(&o, WakeOn{Events: []world.EventType{7, world.EventDestroyed}}, all)
	want := world.Lifecycle{Destroyed: true, Added: world.MaskOf(1), Removed: world.MaskOf(2)}
	if got != want {
		t.Fatalf("%+v, want %+v", got, want)
	}
	got = subscription(&o, WakeOn{Events: []world.EventType{world.EventAdded}}, all)
	if got.Added != all || got.Destroyed || got.Created {
		t.Fatalf("waking on added subscribes to every component's: %+v", got)
	}
	if w := lifecycleWire(world.Lifecycle{}); w != nil {
		t.Fatalf("an empty subscription is omitted: %+v", w)
	}
	if w := (WakeOn{}).wire(); w != nil {
		t.Fatalf("an empty WakeOn is omitted: %+v", w)
	}
	var calls []string
	o.OnCreated(func(e world.Entity) { calls = append(calls, fmt.Sprint("c", e)) })
	o.OnRemoved(2, func(e world.Entity) { calls = append(calls, fmt.Sprint("r", e)) })
	o.call(layout.LifecycleCreated, 5, 0)
	o.call(layout.LifecycleRemoved, 6, 2)
	o.call(layout.LifecycleRemoved, 6, 1) // nobody's
	o.call(layout.LifecycleAdded, 6, 9)   // nobody's
	if fmt.Sprint(calls) != "[ce5v0 re6v0]" {
		t.Fatalf("calls %v", calls)
	}
}
