package thermostat

import (
	"time"

	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
)

// Schedule is a module: it reads every room's setpoint from the world and
// sends a command to set it to Want where it differs.
type Schedule struct {
	S    *Schema
	Want float32 // °C
}

// Spec asks for a snapshot of the setpoints every 30 frames.
func (m *Schedule) Spec() module.Spec {
	return module.Spec{Name: "setpoint", Tier: module.Slow, Every: 30, Reads: world.MaskOf(m.S.Setpoint)}
}

// Tick sets the setpoints that differ from Want.
func (m *Schedule) Tick(v *module.View, cmds *module.Commands, _ time.Duration) error {
	q := v.Query(world.MaskOf(m.S.Setpoint))
	for q.Next() {
		set := module.Column[Setpoint](v, &q, m.S.Setpoint)
		for i := range q.Rows() {
			if q.Match(i) && set[i].C != m.Want {
				module.Set(cmds, q.Entity(i), m.S.Setpoint, Setpoint{C: m.Want})
			}
		}
	}
	return nil
}
