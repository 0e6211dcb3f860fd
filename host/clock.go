package host

import "github.com/fdp-engine/fdp/world"

// stepTime sets the time singleton (world.Time, when the registry has it:
// world.RegisterTime) for the frame about to be simulated: its number, the
// frame period as its step, and the simulation time advanced by that step
// from the world's previous Time (so a recovered world's time goes on from
// the frame it was recovered at). The engine owns it: modules cannot set it
// (world.RejectEngineOwned). Time control will drive Dt later; readers take
// Dt from the singleton, never from the configured rate.
func (e *Engine) stepTime() {
	if _, ok := world.SingletonOf[world.Time](e.w.Registry()); !ok {
		return
	}
	t, _ := world.GetSingleton[world.Time](e.w)
	t.Frame = e.frame
	t.Dt = int64(e.period)
	t.Nanos += t.Dt
	_ = world.SetSingleton(e.w, t) // registered: cannot fail
}
