package module_test

import (
	"time"

	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
)

// EventDied is an event type the simulation publishes (the demo's "died").
const EventDied world.EventType = 2

// Medic keeps the set of entities with Health from lifecycle observers, and
// runs only when an entity died or a Health value changed.
type Medic struct {
	health  world.ComponentID
	wounded map[world.Entity]bool // the entities with Health
	deaths  int
}

func (m *Medic) Spec() module.Spec {
	return module.Spec{Name: "medic", Tier: module.Slow, Every: 0, // 0: only when woken
		Reads:  world.MaskOf(m.health),
		WakeOn: module.WakeOn{Events: []world.EventType{EventDied}, Components: world.MaskOf(m.health)}}
}

// Observe registers the observers (module.Observer): they subscribe the
// module to these lifecycle events and run before each Tick, for every
// change up to the tick's frame, each once.
func (m *Medic) Observe(o *module.Observers) {
	o.OnResync(func(v *module.View) { // a new process, or a new engine: the changes since are lost, rebuild
		clear(m.wounded)
		q := v.Query(world.MaskOf(m.health))
		for q.Next() {
			for i := 0; i < q.Rows(); i++ {
				if q.Match(i) {
					m.wounded[q.Entity(i)] = true
				}
			}
		}
	})
	o.OnAdded(m.health, func(e world.Entity) { m.wounded[e] = true })
	o.OnRemoved(m.health, func(e world.Entity) { delete(m.wounded, e) }) // a destroy removes it too
	o.OnDestroyed(func(world.Entity) { m.deaths++ })
}

func (m *Medic) Tick(v *module.View, c *module.Commands, dt time.Duration) error {
	for e := range m.wounded { // up to date with v.Frame()
		if hp, ok := module.Get[Health](v, e, m.health); ok && hp.HP < hp.Max {
			module.Set(c, e, m.health, Health{HP: hp.HP + 1, Max: hp.Max})
		}
	}
	_, err := v.Events(func(seq, frame uint64, typ uint16, p []byte) {
		// the events that woke it (EventDied) and those its observers got
	})
	return err
}

// Health is the medic's component.
type Health struct{ HP, Max int32 }

// A module reacts to lifecycle events with observers (module.Observer) and
// runs only when something it watches happens (Spec.WakeOn).
func Example_observersAndWakeOn() {
	reg := world.NewRegistry()
	health, _ := world.Register[Health](reg, "Health")
	module.Main(reg, &Medic{health: health, wounded: map[world.Entity]bool{}})
}
