// Package thermostat is a complete small FDP world of its own, built on
// package cli: rooms with a temperature, a thermostat setpoint and a
// heater; a simulation that heats and cools them; and a module, Schedule,
// that sets every room's setpoint. cmd/thermostat is its engine program
// (run, up, ls, dump, stat, gc, verify), cmd/thermostat-setpoint its module
// program, thermostat.yaml the supervisor config that runs both.
package thermostat

import (
	_ "embed"
	"fmt"
	"io"

	"github.com/fdp-engine/fdp/cli"
	"github.com/fdp-engine/fdp/host"
	"github.com/fdp-engine/fdp/world"
)

// Temperature of a room, in °C.
type Temperature struct{ C float32 }

// Setpoint is the temperature a room's thermostat keeps, in °C.
type Setpoint struct{ C float32 }

// Heater of a room: on (1) or off (0), and the energy it used so far.
type Heater struct {
	On uint32
	KJ float64
}

// Schema is the world's component ids. The engine and every module build it
// with NewSchema: the same components in the same order.
type Schema struct {
	Reg                    *world.Registry
	Temp, Setpoint, Heater world.ComponentID
}

// NewSchema registers the components.
func NewSchema() (*Schema, error) {
	s := &Schema{Reg: world.NewRegistry()}
	var err error
	if s.Temp, err = world.Register[Temperature](s.Reg, "Temperature"); err != nil {
		return nil, err
	}
	if s.Setpoint, err = world.Register[Setpoint](s.Reg, "Setpoint"); err != nil {
		return nil, err
	}
	if s.Heater, err = world.Register[Heater](s.Reg, "Heater"); err != nil {
		return nil, err
	}
	return s, nil
}

// The rooms' physics: heat lost to the outside in proportion to the
// difference, a heater's gain, and the thermostat's hysteresis.
const (
	Outside     = 5    // °C
	Loss        = 0.05 // per second, of the difference with the outside
	HeaterGain  = 1.5  // °C per second
	HeaterPower = 2.0  // kW
	Hysteresis  = 0.25 // °C either side of the setpoint
	// FrostSetpoint is every room's setpoint until a module sets another.
	FrostSetpoint = 16
)

// Sim is the simulation: each frame every room's thermostat switches its
// heater, and its temperature moves.
type Sim struct {
	S *Schema
	W *world.World
}

// Step runs one frame of dt seconds.
func (sim *Sim) Step(dt float32) {
	s := sim.S
	q := sim.W.Query(world.MaskOf(s.Temp, s.Setpoint, s.Heater))
	for q.Next() {
		temp := world.ColumnMut[Temperature](&q, s.Temp)
		set := world.Column[Setpoint](&q, s.Setpoint)
		heat := world.ColumnMut[Heater](&q, s.Heater)
		for i := range q.Rows() {
			if !q.Match(i) {
				continue
			}
			t, h := &temp[i], &heat[i]
			switch {
			case t.C < set[i].C-Hysteresis:
				h.On = 1
			case t.C > set[i].C+Hysteresis:
				h.On = 0
			}
			t.C -= (t.C - Outside) * Loss * dt
			if h.On == 1 {
				t.C += HeaterGain * dt
				h.KJ += HeaterPower * float64(dt)
			}
		}
	}
}

// heating counts the rooms whose heater is on, and the energy used.
func (sim *Sim) heating() (on, rooms int, kj float64) {
	q := sim.W.Query(world.MaskOf(sim.S.Heater))
	for q.Next() {
		heat := world.Column[Heater](&q, sim.S.Heater)
		for i := range q.Rows() {
			if q.Match(i) {
				rooms++
				on += int(heat[i].On)
				kj += heat[i].KJ
			}
		}
	}
	return on, rooms, kj
}

// config is the supervisor config of `thermostat up` without --config.
//
//go:embed thermostat.yaml
var config []byte

// CLI is the world for package cli: 8 rooms by default (--entities), from
// 12 to 16 °C, at the frost setpoint; `up` runs thermostat.yaml.
func CLI() (cli.World, error) {
	s, err := NewSchema()
	if err != nil {
		return cli.World{}, err
	}
	return cli.World{
		Name:     "thermostat",
		Short:    "Rooms, their thermostats and heaters: an FDP world",
		Schema:   s.Reg,
		Entities: 8,
		Config:   config,
		Simulation: func(w *world.World, recovered bool, p cli.Params) (host.Simulation, error) {
			sim := &Sim{S: s, W: w}
			if recovered {
				return sim, nil // the rooms carry on as the dead engine left them
			}
			for i := range p.Entities {
				e, err := w.Create()
				if err != nil {
					return nil, err
				}
				t := Temperature{C: 12 + float32(i%5)}
				if err := world.Set(w, e, s.Temp, t); err != nil {
					return nil, err
				}
				if err := world.Set(w, e, s.Setpoint, Setpoint{C: FrostSetpoint}); err != nil {
					return nil, err
				}
				if err := world.Set(w, e, s.Heater, Heater{}); err != nil {
					return nil, err
				}
			}
			return sim, nil
		},
		Status: func(sim host.Simulation) string {
			on, rooms, _ := sim.(*Sim).heating()
			return fmt.Sprintf("heating %d/%d", on, rooms)
		},
		Summary: func(out io.Writer, sim host.Simulation) {
			_, rooms, kj := sim.(*Sim).heating()
			fmt.Fprintf(out, "thermostat: %d rooms, heaters used %.1f kJ\n", rooms, kj)
		},
	}, nil
}
