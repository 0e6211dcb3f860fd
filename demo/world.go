// Package demo is the embedded default world of `engine run` / `engine up`:
// its component schema, its simulation systems and its built-in modules.
package demo

import (
	"fmt"
	"math/rand"

	"github.com/fdp-engine/fdp/world"
)

// Position of an entity in metres.
type Position struct{ X, Y, Z float32 }

// Velocity of an entity in metres per second.
type Velocity struct{ X, Y, Z float32 }

// Health of an entity.
type Health struct {
	HP, Max int32
}

// Team of an entity (the AI modules act per team).
type Team struct{ ID uint32 }

// Event types published by the demo.
const (
	EventSpawned uint16 = 1 // payload: entity u64
	EventDied    uint16 = 2 // payload: entity u64
	EventAlert   uint16 = 3 // published by the alert module: payload entity u64
)

// Schema is the demo's component ids.
type Schema struct {
	Reg                  *world.Registry
	Pos, Vel, Health, Tm world.ComponentID
	// Name is a variable-size string component (NameMaxLen bytes at most):
	// the AI modules name the reinforcements they create.
	Name world.ComponentID
	// Time is the engine's time singleton (world.Time), set every frame.
	Time world.SingletonID
}

// NameMaxLen is the longest Name; each chunk holds 8 arena bytes per entity
// for them (most entities have none).
const NameMaxLen = 24

// NewSchema registers the demo components (Name is variable-size) and the
// engine's time singleton, in a fixed order, so that the engine and every
// module agree on the schema hash.
func NewSchema() (*Schema, error) {
	s := &Schema{Reg: world.NewRegistry()}
	var err error
	if s.Pos, err = world.Register[Position](s.Reg, "Position"); err != nil {
		return nil, err
	}
	if s.Vel, err = world.Register[Velocity](s.Reg, "Velocity"); err != nil {
		return nil, err
	}
	if s.Health, err = world.Register[Health](s.Reg, "Health"); err != nil {
		return nil, err
	}
	if s.Tm, err = world.Register[Team](s.Reg, "Team"); err != nil {
		return nil, err
	}
	if s.Name, err = world.RegisterBytes(s.Reg, "Name", world.BytesSpec{MaxLen: NameMaxLen, PerEntity: 8, UTF8: true}); err != nil {
		return nil, err
	}
	if s.Time, err = world.RegisterTime(s.Reg); err != nil {
		return nil, err
	}
	return s, nil
}

// Config sizes the demo world.
type Config struct {
	Entities      int // initial entities
	ChurnPerSec   int // entities spawned and killed per simulated second
	ChunkCapacity int
	Seed          int64
}

// DefaultConfig is 100K moving entities with some churn.
func DefaultConfig() Config {
	return Config{Entities: 100_000, ChurnPerSec: 500, ChunkCapacity: 1024, Seed: 1}
}

// Sim is the demo simulation.
type Sim struct {
	S     *Schema
	W     *world.World
	cfg   Config
	rng   *rand.Rand
	live  []world.Entity
	churn float64
	// Spawned and Died count the churn.
	Spawned, Died uint64
}

// NewSim creates the world and its initial entities.
func NewSim(s *Schema, cfg Config) (*Sim, error) {
	w, err := NewWorld(s, cfg)
	if err != nil {
		return nil, err
	}
	sim := NewSimFromWorld(s, cfg, w)
	if err := sim.Populate(); err != nil {
		return nil, err
	}
	return sim, nil
}

// Populate spawns the configuration's initial entities into the world (an
// empty one: NewWorld's).
func (sim *Sim) Populate() error {
	for i := 0; i < sim.cfg.Entities; i++ {
		if _, err := sim.spawn(); err != nil {
			return fmt.Errorf("fdp/demo: spawning entity %d: %w", i, err)
		}
	}
	return nil
}

func (sim *Sim) spawn() (world.Entity, error) {
	w, s, r := sim.W, sim.S, sim.rng
	e, err := w.Create()
	if err != nil {
		return 0, err
	}
	if err := world.Set(w, e, s.Pos, Position{X: r.Float32() * 1000, Y: r.Float32() * 1000}); err != nil {
		return 0, err
	}
	if err := world.Set(w, e, s.Vel, Velocity{X: r.Float32()*2 - 1, Y: r.Float32()*2 - 1}); err != nil {
		return 0, err
	}
	if err := world.Set(w, e, s.Health, Health{HP: 100, Max: 100}); err != nil {
		return 0, err
	}
	if err := world.Set(w, e, s.Tm, Team{ID: uint32(r.Intn(4))}); err != nil {
		return 0, err
	}
	sim.live = append(sim.live, e)
	return e, nil
}

// Step runs the systems of one frame of dt seconds: movement, regeneration,
// churn. Emitted events go to the world's frame event buffer.
func (sim *Sim) Step(dt float32) {
	w, s := sim.W, sim.S
	q := w.Query(world.MaskOf(s.Pos, s.Vel))
	for q.Next() {
		pos := world.ColumnMut[Position](&q, s.Pos)
		vel := world.Column[Velocity](&q, s.Vel)
		for i, n := 0, q.Rows(); i < n; i++ {
			if !q.Match(i) {
				continue
			}
			p := &pos[i]
			p.X += vel[i].X * dt
			p.Y += vel[i].Y * dt
			if p.X < 0 || p.X > 1000 {
				p.X = 500
			}
			if p.Y < 0 || p.Y > 1000 {
				p.Y = 500
			}
		}
	}
	sim.churn += float64(sim.cfg.ChurnPerSec) * float64(dt)
	var buf [8]byte
	for sim.churn >= 1 && len(sim.live) > 0 {
		sim.churn--
		j := sim.rng.Intn(len(sim.live))
		e := sim.live[j]
		sim.live[j] = sim.live[len(sim.live)-1]
		sim.live = sim.live[:len(sim.live)-1]
		if w.Destroy(e) == nil {
			sim.Died++
			putEntity(buf[:], e)
			w.Emit(world.EventType(EventDied), buf[:])
		}
		if ne, err := sim.spawn(); err == nil {
			sim.Spawned++
			putEntity(buf[:], ne)
			w.Emit(world.EventType(EventSpawned), buf[:])
		}
	}
}

// Track adds an entity created by a module command to the churn pool.
func (sim *Sim) Track(e world.Entity) { sim.live = append(sim.live, e) }

func putEntity(b []byte, e world.Entity) {
	v := uint64(e)
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

// EntityFromBytes decodes an event payload entity.
func EntityFromBytes(b []byte) world.Entity {
	if len(b) < 8 {
		return 0
	}
	var v uint64
	for i := 0; i < 8; i++ {
		v |= uint64(b[i]) << (8 * i)
	}
	return world.Entity(v)
}
