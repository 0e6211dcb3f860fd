package demo

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"github.com/fdp-engine/fdp/internal/logs"
	"github.com/fdp-engine/fdp/module"
	"github.com/fdp-engine/fdp/world"
)

// Telemetry is a fast-tier module: every frame it reads the latest frame in
// place and keeps statistics, logging a line every Report ticks.
type Telemetry struct {
	S      *Schema
	Log    *slog.Logger
	Report int
	ticks  int
	// Last values, for tests and the log line.
	Alive    int
	Frame    uint64
	MeanX    float64
	Lost     uint64
	Received uint64
	// Time is the engine's time singleton as the last tick's frame held
	// it (world.Time: frame, simulation time, step).
	Time world.Time
}

// Spec declares a fast module reading Position.
func (t *Telemetry) Spec() module.Spec {
	return module.Spec{Name: "telemetry", Tier: module.Fast, Every: 1, Reads: world.MaskOf(t.S.Pos)}
}

// Tick computes the alive count and the mean X position, and reads the
// engine's time singleton.
func (t *Telemetry) Tick(v *module.View, _ *module.Commands, _ time.Duration) error {
	var sum float64
	n := 0
	q := v.Query(world.MaskOf(t.S.Pos))
	for q.Next() {
		pos := module.Column[Position](v, &q, t.S.Pos)
		for i, rows := 0, q.Rows(); i < rows; i++ {
			if q.Match(i) {
				sum += float64(pos[i].X)
				n++
			}
		}
	}
	lost, err := v.Events(func(_, _ uint64, _ uint16, _ []byte) { t.Received++ })
	if err != nil {
		return err
	}
	t.Lost += lost
	t.Alive, t.Frame = n, v.Frame()
	if tm, ok := module.Singleton[world.Time](v); ok {
		t.Time = tm
	}
	if n > 0 {
		t.MeanX = sum / float64(n)
	}
	t.ticks++
	if t.Report > 0 && t.ticks%t.Report == 0 && t.Log != nil {
		t.Log.Info("telemetry", "frame", t.Frame, "sim_time", logs.Round3(time.Duration(t.Time.Nanos)),
			"alive", n, "mean_x", fmt.Sprintf("%.1f", t.MeanX), "events", t.Received, "events_lost", t.Lost)
	}
	return nil
}

// AI is a slow-tier module (10 Hz at 60 fps: every 6 frames). Three of them
// with the same tier and frequency form a convoy sharing one snapshot. Each
// damages a few entities of its team, destroys the dead and spawns
// reinforcements through commands, each named ("ai-1 #7": a Name, a
// variable-size value).
type AI struct {
	S     *Schema
	Name  string
	Team  uint32
	Every int
	Log   *slog.Logger
	// Counters.
	Ticks, Damaged, Killed, Spawned int
}

// Spec declares a slow module reading Position, Health and Team.
func (a *AI) Spec() module.Spec {
	every := a.Every
	if every == 0 {
		every = 6
	}
	return module.Spec{Name: a.Name, Tier: module.Slow, Every: every, Reads: world.MaskOf(a.S.Pos, a.S.Health, a.S.Tm)}
}

// Tick issues commands against its snapshot.
func (a *AI) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	a.Ticks++
	budget := 20
	q := v.Query(world.MaskOf(a.S.Health, a.S.Tm))
	for q.Next() && budget > 0 {
		hp := module.Column[Health](v, &q, a.S.Health)
		tm := module.Column[Team](v, &q, a.S.Tm)
		for i, rows := 0, q.Rows(); i < rows && budget > 0; i++ {
			if !q.Match(i) || tm[i].ID != a.Team || (i+a.Ticks)%97 != 0 {
				continue
			}
			budget--
			e := q.Entity(i)
			if hp[i].HP <= 25 {
				c.Destroy(e)
				a.Killed++
				continue
			}
			module.Set(c, e, a.S.Health, Health{HP: hp[i].HP - 25, Max: hp[i].Max})
			a.Damaged++
		}
	}
	// Reinforcements: one new entity per tick, built with a temporary id.
	ne := c.Create()
	module.Set(c, ne, a.S.Pos, Position{X: 500, Y: 500})
	module.Set(c, ne, a.S.Vel, Velocity{X: 0.5})
	module.Set(c, ne, a.S.Health, Health{HP: 100, Max: 100})
	module.Set(c, ne, a.S.Tm, Team{ID: a.Team})
	a.Spawned++
	c.SetString(ne, a.S.Name, fmt.Sprintf("%s #%d", a.Name, a.Spawned)) // a variable-size value
	if a.Log != nil && a.Ticks%50 == 0 {
		a.Log.Info("ai", "ticks", a.Ticks, "damaged", a.Damaged, "killed", a.Killed, "spawned", a.Spawned, "snapshot_frame", v.Frame())
	}
	return nil
}

// Alert is a reactive slow module: it runs when the simulation publishes a
// "died" event (Spec.WakeOn), not on a period, reads the events of every
// frame since its last run and publishes an alert event with the number of
// deaths it saw. Its lifecycle observer counts every entity destroyed,
// whoever destroyed it (the simulation, the AI modules' commands). It also
// counts the chunks whose Health changed since its previous run
// (world.Changed: chunk granular; every chunk on its first run).
type Alert struct {
	S *Schema
	// Every > 0 also runs it every Every frames; 0 (the default): only
	// when woken.
	Every int
	Log   *slog.Logger
	// Deaths counts the "died" events, Destroyed the entities its
	// observer saw destroyed.
	Deaths, Destroyed uint64
	Lost              uint64
	Runs              int
	// HealthChunks sums, over its ticks, the chunks with Health whose
	// Health changed since the module's previous successful tick.
	HealthChunks uint64
}

// Spec declares a slow module with its own snapshot (no convoy), woken by
// the died events.
func (a *Alert) Spec() module.Spec {
	return module.Spec{Name: "alert", Tier: module.Slow, Every: a.Every, Reads: world.MaskOf(a.S.Health), Group: "solo",
		WakeOn: module.WakeOn{Events: []world.EventType{world.EventType(EventDied)}}}
}

// Observe counts the destroyed entities (module.Observer).
func (a *Alert) Observe(o *module.Observers) {
	o.OnDestroyed(func(world.Entity) { a.Destroyed++ })
}

// Tick counts deaths and publishes an alert.
func (a *Alert) Tick(v *module.View, c *module.Commands, _ time.Duration) error {
	a.Runs++
	var deaths uint64
	lost, err := v.Events(func(_, _ uint64, typ uint16, _ []byte) {
		if typ == EventDied {
			deaths++
		}
	})
	if err != nil {
		return err
	}
	a.Deaths += deaths
	a.Lost += lost
	q := v.Query(world.MaskOf(a.S.Health), world.Changed(a.S.Health))
	for q.Next() {
		a.HealthChunks++
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], deaths)
	c.Publish(EventAlert, b[:])
	if a.Log != nil && a.Runs%10 == 0 {
		a.Log.Info("alert", "runs", a.Runs, "frame", v.Frame(), "deaths_seen", a.Deaths, "destroyed_seen", a.Destroyed,
			"events_lost", a.Lost, "health_chunks_changed", a.HealthChunks)
	}
	return nil
}
